package jobruntime.kms;

import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.mapreduce.JobContext;
import org.apache.hadoop.mapreduce.TaskAttemptContext;
import org.apache.parquet.ParquetReadOptions;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.metadata.BlockMetaData;
import org.apache.parquet.hadoop.util.HadoopInputFile;
import org.apache.spark.internal.io.FileCommitProtocol.TaskCommitMessage;
import org.apache.spark.internal.io.FileNameSpec;
import org.apache.spark.sql.execution.datasources.SQLHadoopMapReduceCommitProtocol;
import scala.Option;
import scala.collection.immutable.Seq;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Spark's file commit protocol ({@code spark.sql.sources.commitProtocolClass}) with one
 * addition for confidential writes: each task measures the parts it wrote (size, footer
 * digest ({@link FileCheck#footer}: a few KiB are read, not the part), rows and row groups,
 * read back with the pinned key metadata of the hashed bytes) before its commit and sends
 * that in its commit message; the job commit hands the parts to the Python commit
 * ({@link StagedParts}), which checks every part in staging against its task's digest
 * before publishing (jobruntime/dataset/versions.py: the same
 * commit as the Python writer's). Only one attempt per partition commits (Spark's output
 * commit coordinator), so a retried or speculative task's extra files are never reported.
 * Writes without {@code jobruntime.dataset} in their configuration behave exactly as
 * Spark's default protocol.
 */
public class ConfidentialCommitProtocol extends SQLHadoopMapReduceCommitProtocol {
  private static final long serialVersionUID = 1L;
  private transient List<String> written;

  public ConfidentialCommitProtocol(String jobId, String path, boolean dynamicPartitionOverwrite) {
    super(jobId, path, dynamicPartitionOverwrite);
  }

  public ConfidentialCommitProtocol(String jobId, String path) {
    this(jobId, path, false);
  }

  /** What a confidential task sends: Spark's own commit message and the parts it measured. */
  static final class Envelope implements Serializable {
    private static final long serialVersionUID = 1L;
    final Object inner;
    final ArrayList<StagedParts.Part> parts;

    Envelope(Object inner, ArrayList<StagedParts.Part> parts) {
      this.inner = inner;
      this.parts = parts;
    }
  }

  @Override
  public String newTaskTempFile(TaskAttemptContext context, Option<String> dir, FileNameSpec spec) {
    String file = super.newTaskTempFile(context, dir, spec);
    if (Settings.confidential(context.getConfiguration())) {
      if (dir.isDefined()) {
        throw Settings.refused("partitioned confidential writes are not supported");
      }
      if (written == null) {
        written = new ArrayList<>();
      }
      written.add(file);
    }
    return file;
  }

  @Override
  public String newTaskTempFileAbsPath(TaskAttemptContext context, String absoluteDir, FileNameSpec spec) {
    if (Settings.confidential(context.getConfiguration())) {
      throw Settings.refused("confidential writes go to the dataset's staging area only");
    }
    return super.newTaskTempFileAbsPath(context, absoluteDir, spec);
  }

  @Override
  public TaskCommitMessage commitTask(TaskAttemptContext context) {
    Configuration conf = context.getConfiguration();
    if (!Settings.confidential(conf)) {
      return super.commitTask(context);
    }
    Settings settings = Settings.forWrite(conf);
    int partition = context.getTaskAttemptID().getTaskID().getId();
    ArrayList<StagedParts.Part> parts = new ArrayList<>();
    for (String file : written == null ? List.<String>of() : written) {
      parts.add(measure(conf, new Path(file), partition, settings.uri));
    }
    TaskCommitMessage inner = super.commitTask(context);
    return new TaskCommitMessage(new Envelope(inner.obj(), parts));
  }

  @Override
  public void abortTask(TaskAttemptContext context) {
    written = null;
    super.abortTask(context);
  }

  @Override
  public void commitJob(JobContext context, Seq<TaskCommitMessage> taskCommits) {
    List<TaskCommitMessage> plain = new ArrayList<>();
    List<StagedParts.Part> parts = new ArrayList<>();
    boolean confidential = false;
    for (TaskCommitMessage message : CollectionConverters.asJava(taskCommits)) {
      if (message.obj() instanceof Envelope) {
        Envelope envelope = (Envelope) message.obj();
        plain.add(new TaskCommitMessage(envelope.inner));
        parts.addAll(envelope.parts);
        confidential = true;
      } else {
        plain.add(message);
      }
    }
    super.commitJob(context, CollectionConverters.asScala(plain).toList());
    Configuration conf = context.getConfiguration();
    if (confidential || Settings.confidential(conf)) {
      String writeId = conf.getTrimmed(Settings.WRITE_ID);
      if (writeId == null) {
        throw Settings.refused(Settings.WRITE_ID + " is required to write");
      }
      StagedParts.put(writeId, parts);
    }
  }

  /** Size, digest, rows and row groups of one part the task has closed. */
  private static StagedParts.Part measure(Configuration conf, Path path, int partition, String name) {
    FileSystem fs;
    try {
      fs = path.getFileSystem(conf);
    } catch (IOException e) {
      throw new Refusal("storage.io", name + ": no file system for a staged part");
    }
    FileCheck check = FileCheck.footer(fs, path, -1, null, name, path.getName());
    ParquetReadOptions options = ParquetReadOptions.builder()
        .withDecryption(ConfidentialCryptoFactory.decryption(conf, path, check.footerKeyMetadata, name, path.getName()))
        .build();
    long rows = 0;
    int groups = 0;
    try (ParquetFileReader reader = ParquetFileReader.open(HadoopInputFile.fromPath(path, conf), options)) {
      for (BlockMetaData block : reader.getFooter().getBlocks()) {
        rows += block.getRowCount();
        groups++;
      }
    } catch (IOException e) {
      throw new Refusal("dataset.write", name + ": staged part " + path.getName() + " could not be read back");
    }
    return new StagedParts.Part(partition, path.getName(), check.size, check.sha256, rows, groups);
  }
}
