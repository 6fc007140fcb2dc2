package jobruntime.kms;

import java.io.EOFException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.fs.impl.OpenFileParameters;

/**
 * The local file system of a confidential native read ({@code fs.file.impl} in the read's
 * options, so its configuration carries the verified manifest's files):
 *
 * <ul>
 *   <li>every status of a listed file (a stat, a listing) reports the <b>manifest's</b> size,
 *       never storage's, so Parquet locates the footer where the verified one is (review: a
 *       length raced between two stats once let Parquet read a planted footer);
 *   <li>a listed file opens only once the crypto factory has checked it ({@link VerifiedFiles})
 *       and only while storage holds exactly that many bytes;
 *   <li>reads of it return the verified bytes of its first 4 bytes and footer region, and
 *       nothing past its verified size.
 * </ul>
 *
 * Every other byte Parquet decodes is in an AES-GCM module under the key and file AAD those
 * bytes pin. The check itself reads storage's own status and bytes ({@link #rawStatus},
 * {@link #openUnverified}).
 */
public final class VerifiedLocalFileSystem extends LocalFileSystem {
  @Override
  public FSDataInputStream open(Path f, int bufferSize) throws IOException {
    String name = name(f);
    VerifiedFiles.Verified verified = VerifiedFiles.get(f);
    if (verified == null) {
      throw new Refusal("dataset.file_extra", name + " was opened before it was verified");
    }
    long length;
    try {
      length = rawStatus(f).getLen();
    } catch (FileNotFoundException e) {
      throw new Refusal("dataset.file_missing", name + " is missing");
    }
    if (length != verified.size) {
      throw new Refusal("dataset.file_truncated",
          name + " is " + length + " bytes, " + verified.size + " were verified");
    }
    return new FSDataInputStream(new Overlay(super.open(f, bufferSize), verified));
  }

  /** The file as storage has it, for the check itself ({@link FileCheck}). */
  FSDataInputStream openUnverified(Path f) throws IOException {
    return super.open(f, getConf().getInt("io.file.buffer.size", 4096));
  }

  /** Storage's own status of the file, for the check itself. */
  FileStatus rawStatus(Path f) throws IOException {
    return super.getFileStatus(f);
  }

  @Override
  public FileStatus getFileStatus(Path f) throws IOException {
    return listed(super.getFileStatus(f));
  }

  @Override
  public FileStatus getFileLinkStatus(Path f) throws IOException {
    return listed(super.getFileLinkStatus(f));
  }

  @Override
  public FileStatus[] listStatus(Path f) throws IOException {
    FileStatus[] found = super.listStatus(f);
    for (int i = 0; i < found.length; i++) {
      found[i] = listed(found[i]);
    }
    return found;
  }

  @Override
  public RemoteIterator<LocatedFileStatus> listLocatedStatus(Path f) throws IOException {
    RemoteIterator<LocatedFileStatus> found = super.listLocatedStatus(f);
    return new RemoteIterator<>() {
      @Override
      public boolean hasNext() throws IOException {
        return found.hasNext();
      }

      @Override
      public LocatedFileStatus next() throws IOException {
        LocatedFileStatus status = found.next();
        long size = manifestSize(status.getPath());
        if (size < 0 || status.isDirectory()) {
          return status;
        }
        return new LocatedFileStatus(withLength(status, size), status.getBlockLocations());
      }
    };
  }

  /** A listed file's status with the manifest's size; anything else as storage has it. */
  private FileStatus listed(FileStatus status) throws IOException {
    long size = manifestSize(status.getPath());
    if (size < 0 || status.isDirectory()) {
      return status;
    }
    return withLength(status, size);
  }

  private static FileStatus withLength(FileStatus s, long size) throws IOException {
    return new FileStatus(size, false, s.getReplication(), s.getBlockSize(), s.getModificationTime(),
        s.getAccessTime(), s.getPermission(), s.getOwner(), s.getGroup(),
        s.isSymlink() ? s.getSymlink() : null, s.getPath());
  }

  private long manifestSize(Path path) {
    Configuration conf = getConf();
    if (conf == null || conf.get(Settings.FILES) == null) {
      return -1;
    }
    ManifestFiles.Entry entry = ManifestFiles.of(conf).find(path);
    return entry == null ? -1 : entry.size;
  }

  private String name(Path f) {
    Configuration conf = getConf();
    String uri = conf == null ? null : conf.getTrimmed(Settings.URI);
    ManifestFiles.Entry entry = conf == null || conf.get(Settings.FILES) == null
        ? null : ManifestFiles.of(conf).find(f);
    return (uri == null ? "" : uri + ": ") + "file " + (entry == null ? f.getName() : entry.path);
  }

  @Override
  protected CompletableFuture<FSDataInputStream> openFileWithOptions(Path path, OpenFileParameters parameters)
      throws IOException {
    return CompletableFuture.completedFuture(open(path, parameters.getBufferSize()));
  }

  /** Storage's bytes with the verified ones laid over them; end of file at the verified size. */
  private static final class Overlay extends FSInputStream {
    private final FSDataInputStream in;
    private final VerifiedFiles.Verified verified;

    Overlay(FSDataInputStream in, VerifiedFiles.Verified verified) {
      this.in = in;
      this.verified = verified;
    }

    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      return read(one, 0, 1) <= 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      long at = in.getPos();
      if (len > 0 && bounded(at, len) == 0) {
        return -1;
      }
      int n = in.read(b, off, bounded(at, len));
      if (n > 0) {
        verified.overlay(at, b, off, n);
      }
      return n;
    }

    @Override
    public int read(long position, byte[] b, int off, int len) throws IOException {
      if (len > 0 && bounded(position, len) == 0) {
        return -1;
      }
      int n = in.read(position, b, off, bounded(position, len));
      if (n > 0) {
        verified.overlay(position, b, off, n);
      }
      return n;
    }

    @Override
    public void readFully(long position, byte[] b, int off, int len) throws IOException {
      if (position < 0 || position + len > verified.size) {
        throw new EOFException("read past the verified end of the file");
      }
      in.readFully(position, b, off, len);
      verified.overlay(position, b, off, len);
    }

    private int bounded(long at, int len) {
      return (int) Math.max(0, Math.min(len, verified.size - at));
    }

    @Override
    public void seek(long pos) throws IOException {
      in.seek(pos);
    }

    @Override
    public long getPos() throws IOException {
      return in.getPos();
    }

    @Override
    public boolean seekToNewSource(long targetPos) {
      return false;
    }

    @Override
    public int available() throws IOException {
      return bounded(in.getPos(), in.available());
    }

    @Override
    public void close() throws IOException {
      in.close();
    }
  }
}
