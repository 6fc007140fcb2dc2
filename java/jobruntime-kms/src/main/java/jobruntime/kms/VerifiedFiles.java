package jobruntime.kms;

import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.hadoop.fs.Path;

/**
 * The files this JVM has checked against a verified manifest, by local path: their size, the
 * pinned footer key metadata, and the verified bytes of their first 4 bytes and footer region.
 *
 * <p>Every later open of a confidential file goes through {@link VerifiedLocalFileSystem},
 * which serves those verified bytes from here instead of storage's: the crypto metadata (the
 * algorithm, the file's unique AAD, its key metadata) and the encrypted footer that Parquet
 * decodes are the ones that were hashed, whatever storage holds by then. Without that, a file
 * changed after its check could name AES_GCM_CTR_V1, whose pages are not authenticated, under
 * the same key metadata. Bounded in bytes (least recently used out); an evicted file is
 * checked again at its next open.
 */
final class VerifiedFiles {
  private static final long MAX_BYTES = 64L << 20;
  private static final Map<String, Verified> BY_PATH = new LinkedHashMap<>(64, 0.75f, true);
  private static long bytes;

  private VerifiedFiles() {}

  /** One verified file: what its manifest entry said, and the bytes that were checked. */
  static final class Verified {
    final String entryKey;
    final long size;
    final byte[] head;
    final long regionStart;
    final byte[] region;
    final byte[] footerKeyMetadata;

    Verified(String entryKey, FileCheck check) {
      this.entryKey = entryKey;
      this.size = check.size;
      this.head = check.head;
      this.regionStart = check.size - check.region.length;
      this.region = check.region;
      this.footerKeyMetadata = check.footerKeyMetadata;
    }

    /** Replace what storage returned for [at, at + n) with the verified bytes it overlaps. */
    void overlay(long at, byte[] buffer, int offset, int n) {
      copy(head, 0, at, buffer, offset, n);
      copy(region, regionStart, at, buffer, offset, n);
    }

    private static void copy(byte[] source, long sourceAt, long at, byte[] buffer, int offset, int n) {
      long from = Math.max(at, sourceAt);
      long to = Math.min(at + n, sourceAt + source.length);
      if (from < to) {
        System.arraycopy(source, (int) (from - sourceAt), buffer, offset + (int) (from - at), (int) (to - from));
      }
    }
  }

  static String key(Path path) {
    return path.toUri().getPath();
  }

  static Verified get(Path path) {
    synchronized (BY_PATH) {
      return BY_PATH.get(key(path));
    }
  }

  static void put(Path path, Verified verified) {
    synchronized (BY_PATH) {
      Verified old = BY_PATH.put(key(path), verified);
      bytes += verified.region.length - (old == null ? 0 : old.region.length);
      var eldest = BY_PATH.entrySet().iterator();
      while (bytes > MAX_BYTES && BY_PATH.size() > 1 && eldest.hasNext()) {
        Verified gone = eldest.next().getValue();
        eldest.remove();
        bytes -= gone.region.length;
      }
    }
  }

  /** Forget every verified file: what a fresh JVM knows (benchmarks measure that first read). */
  static void clear() {
    synchronized (BY_PATH) {
      BY_PATH.clear();
      bytes = 0;
    }
  }
}
