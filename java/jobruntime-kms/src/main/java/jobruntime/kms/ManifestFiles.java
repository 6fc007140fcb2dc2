package jobruntime.kms;

import java.util.HashMap;
import java.util.Map;
import java.util.regex.Pattern;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * The files a read may decode, from the manifest the driver verified (MAC through the agent,
 * the control plane's recorded version, the exact file set and sizes): {@code jobruntime.root}
 * and {@code jobruntime.files} = {@code "path:size:footer:sha256,..."}, paths relative to the
 * root ({@code whole} instead of {@code footer} for a schema-1 manifest's whole-file digest).
 */
final class ManifestFiles {
  private static final Pattern ENTRY =
      Pattern.compile("v[0-9]{6}-[0-9a-f]{8}/part-[0-9]{5}\\.parquet:[0-9]{1,18}:(footer|whole):[0-9a-f]{64}");
  private static final Map<String, ManifestFiles> PARSED = new HashMap<>();

  final String root;
  final Map<String, Entry> entries;

  static final class Entry {
    final String path;
    final long size;
    final boolean whole;
    final String sha256;

    Entry(String path, long size, boolean whole, String sha256) {
      this.path = path;
      this.size = size;
      this.whole = whole;
      this.sha256 = sha256;
    }
  }

  private ManifestFiles(String root, Map<String, Entry> entries) {
    this.root = root;
    this.entries = entries;
  }

  static ManifestFiles of(Configuration conf) {
    String root = conf.getTrimmed(Settings.ROOT);
    String files = conf.getTrimmed(Settings.FILES);
    if (root == null || files == null) {
      throw Settings.refused(Settings.ROOT + " and " + Settings.FILES + " are required to read");
    }
    String key = root + "\n" + files;
    synchronized (PARSED) {
      ManifestFiles found = PARSED.get(key);
      if (found == null) {
        found = parse(root, files);
        if (PARSED.size() > 64) {
          PARSED.clear();
        }
        PARSED.put(key, found);
      }
      return found;
    }
  }

  private static ManifestFiles parse(String root, String files) {
    Map<String, Entry> entries = new HashMap<>();
    for (String item : files.isEmpty() ? new String[0] : files.split(",")) {
      if (!ENTRY.matcher(item).matches()) {
        throw Settings.refused(Settings.FILES + " has a malformed entry");
      }
      String[] parts = item.split(":");
      entries.put(parts[0], new Entry(parts[0], Long.parseLong(parts[1]), parts[2].equals("whole"), parts[3]));
    }
    return new ManifestFiles(new Path(root).toUri().getPath(), entries);
  }

  /** The manifest's entry for this file, or null. */
  Entry find(Path file) {
    String full = file.toUri().getPath();
    String prefix = root.endsWith("/") ? root : root + "/";
    return full.startsWith(prefix) ? entries.get(full.substring(prefix.length())) : null;
  }

  /** The manifest's entry for this file, or a refusal: a reader decodes listed files only. */
  Entry entry(Path file, String name) {
    Entry entry = find(file);
    if (entry == null) {
      throw new Refusal("dataset.file_extra", name + ": file " + file.getName() + " is not in the verified manifest");
    }
    return entry;
  }
}
