package jobruntime.kms;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The parts of a confidential native write, as the tasks that wrote them measured them,
 * handed from the write job's commit (on the driver) to the Python commit code
 * (jobruntime/native/write.py, through the JVM gateway) by write id. They travelled from
 * executors in Spark's task commit messages, over Spark's authenticated RPC, never through
 * storage.
 */
public final class StagedParts {
  private static final Map<String, String> BY_WRITE = new ConcurrentHashMap<>();
  private static final ObjectMapper JSON = new ObjectMapper();

  private StagedParts() {}

  /** One part file: its task's partition, its name in the staging directory, what it holds. */
  static final class Part implements Serializable {
    private static final long serialVersionUID = 1L;
    final int partition;
    final String name;
    final long size;
    final String footerSha256;
    final long rows;
    final int rowGroups;

    Part(int partition, String name, long size, String footerSha256, long rows, int rowGroups) {
      this.partition = partition;
      this.name = name;
      this.size = size;
      this.footerSha256 = footerSha256;
      this.rows = rows;
      this.rowGroups = rowGroups;
    }
  }

  static void put(String writeId, List<Part> parts) {
    List<Map<String, Object>> rows = new ArrayList<>();
    for (Part p : parts) {
      Map<String, Object> row = new LinkedHashMap<>();
      row.put("partition", p.partition);
      row.put("name", p.name);
      row.put("size", p.size);
      row.put("footer_sha256", p.footerSha256);
      row.put("rows", p.rows);
      row.put("row_groups", p.rowGroups);
      rows.add(row);
    }
    try {
      BY_WRITE.put(writeId, JSON.writeValueAsString(rows));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("parts of write " + writeId + " could not be encoded");
    }
  }

  /** The parts of a committed write as JSON, once; null if no such write committed. */
  public static String take(String writeId) {
    return BY_WRITE.remove(writeId);
  }
}
