package jobruntime.kms;

import java.io.ByteArrayInputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.HexFormat;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.format.FileCryptoMetaData;
import org.apache.parquet.format.Util;

/**
 * A file checked against its manifest entry before any byte of it is decrypted: its size, a
 * SHA-256 of its ciphertext, and the footer key metadata of exactly the bytes that were hashed.
 *
 * <p>Schema-2 manifests pin the <b>footer digest</b> ({@link #footer}): the SHA-256 of the
 * file's first 4 bytes and its footer region (crypto metadata, encrypted footer, length,
 * magic), a few KiB. Every other byte of a PME file is either inside an AES-GCM module
 * authenticated with the file's data key and an AAD of its unique AAD, module type and
 * ordinals, all of which the footer region pins, or a module's length prefix; so a verified
 * footer lets Spark skip row groups without hashing them, and an altered module fails when
 * it is decoded. Schema 1 pinned the whole file's SHA-256 ({@link #whole}).
 * jobruntime/dataset/footer.py computes the same digest.
 *
 * <p>The verified head and footer region are kept ({@link VerifiedFiles}) and served to every
 * later open of the file ({@link VerifiedLocalFileSystem}), so Parquet decodes with exactly
 * the bytes that were hashed: a file swapped in after the check is decoded under the verified
 * file's key and AAD, and its modules fail authentication. The key metadata is taken from
 * inside those bytes too, and only it is given a key ({@link PinnedKeyRetriever}).
 */
final class FileCheck {
  static final byte[] ENCRYPTED_MAGIC = "PARE".getBytes(StandardCharsets.US_ASCII);
  private static final int CHUNK = 1 << 20;
  private static final int HEAD = 4;
  private static final long FOOTER_MAX = 64L << 20;

  final long size;
  final String sha256;
  final byte[] footerKeyMetadata;
  /** The verified first 4 bytes and footer region, which later opens are served from. */
  final byte[] head;
  final byte[] region;

  private FileCheck(long size, String sha256, byte[] footerKeyMetadata, byte[] head, byte[] region) {
    this.size = size;
    this.sha256 = sha256;
    this.footerKeyMetadata = footerKeyMetadata;
    this.head = head;
    this.region = region;
  }

  /** Storage's bytes: never the verified overlay of a file checked before. */
  private static FSDataInputStream open(FileSystem fs, Path path) throws IOException {
    return fs instanceof VerifiedLocalFileSystem
        ? ((VerifiedLocalFileSystem) fs).openUnverified(path)
        : fs.open(path);
  }

  /**
   * Read the file's ends, hash and check them: its size against {@code expectedSize} and its
   * footer digest against {@code expectedSha256} when given (a read), else only measure it (a
   * write's task commit).
   */
  static FileCheck footer(
      FileSystem fs, Path path, long expectedSize, String expectedSha256, String name, String rel) {
    long length = length(fs, path, expectedSize, name, rel);
    MessageDigest sha = sha256();
    try (FSDataInputStream in = open(fs, path)) {
      byte[] tail = new byte[8];
      if (length >= HEAD + 8) {
        in.readFully(length - 8, tail);
      }
      long footer = footerLength(tail);
      long start = length - 8 - footer;
      if (length < HEAD + 8 || !Arrays.equals(Arrays.copyOfRange(tail, 4, 8), ENCRYPTED_MAGIC)
          || footer == 0 || start < HEAD || footer > FOOTER_MAX) {
        // Not what the manifest lists (a read), or not what a PME writer makes (a commit).
        throw expectedSha256 != null ? replaced(name, rel) : notEncrypted(name, rel);
      }
      byte[] head = new byte[HEAD];
      in.readFully(0, head);
      byte[] region = new byte[(int) (length - start)];
      in.readFully(start, region);
      sha.update(head);
      sha.update(region);
      String digest = checked(sha, expectedSha256, name, rel);
      if (!Arrays.equals(tail, Arrays.copyOfRange(region, region.length - 8, region.length))) {
        throw changedWhileChecked(name, rel);
      }
      return new FileCheck(length, digest, footerKeyMetadata(tail, region, name, rel), head, region);
    } catch (IOException e) {
      throw unreadable(e, name, rel);
    }
  }

  /**
   * Schema 1: read and hash the whole file, and check its size against {@code expectedSize} and
   * its SHA-256 against {@code expectedSha256}.
   */
  static FileCheck whole(
      FileSystem fs, Path path, long expectedSize, String expectedSha256, String name, String rel) {
    long length = length(fs, path, expectedSize, name, rel);
    MessageDigest sha = sha256();
    byte[] tail = new byte[8];
    byte[] window = null;
    long windowStart = -1;
    long read = 0;
    try (FSDataInputStream in = open(fs, path)) {
      if (length >= 8) {
        in.readFully(length - 8, tail); // where the crypto metadata is; checked below
        long footer = footerLength(tail);
        if (footer > 0 && footer <= length - 12 && footer <= FOOTER_MAX) {
          windowStart = length - 8 - footer;
          window = new byte[(int) (footer + 8)]; // the whole footer region
        }
      }
      byte[] head = new byte[Math.min(HEAD, (int) length)];
      byte[] hashedTail = new byte[8];
      byte[] buffer = new byte[CHUNK];
      in.seek(0);
      int n;
      while ((n = in.read(buffer)) > 0) {
        sha.update(buffer, 0, n);
        copyOverlap(buffer, n, read, window, windowStart);
        copyOverlap(buffer, n, read, head, 0);
        copyOverlap(buffer, n, read, hashedTail, length - 8);
        read += n;
      }
      if (read != length) {
        throw truncated(name, rel, read, length);
      }
      String digest = checked(sha, expectedSha256, name, rel);
      if (!Arrays.equals(tail, hashedTail)) {
        throw changedWhileChecked(name, rel);
      }
      return new FileCheck(length, digest, footerKeyMetadata(tail, window, name, rel), head, window);
    } catch (IOException e) {
      throw unreadable(e, name, rel);
    }
  }

  private static long length(FileSystem fs, Path path, long expectedSize, String name, String rel) {
    long length;
    try {
      // Storage's own length: the read's file system reports the manifest's to Spark.
      length = fs instanceof VerifiedLocalFileSystem
          ? ((VerifiedLocalFileSystem) fs).rawStatus(path).getLen()
          : fs.getFileStatus(path).getLen();
    } catch (IOException e) {
      throw unreadable(e, name, rel);
    }
    if (expectedSize >= 0 && length != expectedSize) {
      throw truncated(name, rel, length, expectedSize);
    }
    return length;
  }

  /** Missing, or unreadable: the exception's kind only (its text can quote a path or bytes). */
  private static Refusal unreadable(IOException e, String name, String rel) {
    if (e instanceof FileNotFoundException) {
      return new Refusal("dataset.file_missing", name + ": file " + rel + " is missing");
    }
    return new Refusal("storage.io", name + ": file " + rel + " could not be read ("
        + e.getClass().getSimpleName() + ")");
  }

  private static Refusal replaced(String name, String rel) {
    return new Refusal("dataset.file_corrupt", name + ": file " + rel + " was replaced or altered");
  }

  private static Refusal changedWhileChecked(String name, String rel) {
    return new Refusal("dataset.file_corrupt", name + ": file " + rel + " changed while it was checked");
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The digest, compared with the expected one in constant time when there is one. */
  private static String checked(MessageDigest sha, String expectedSha256, String name, String rel) {
    String digest = HexFormat.of().formatHex(sha.digest());
    if (expectedSha256 != null
        && !MessageDigest.isEqual(
            digest.getBytes(StandardCharsets.US_ASCII), expectedSha256.getBytes(StandardCharsets.US_ASCII))) {
      throw replaced(name, rel);
    }
    return digest;
  }

  private static long footerLength(byte[] tail) {
    return Integer.toUnsignedLong(
        (tail[0] & 0xff) | (tail[1] & 0xff) << 8 | (tail[2] & 0xff) << 16 | (tail[3] & 0xff) << 24);
  }

  private static Refusal notEncrypted(String name, String rel) {
    return new Refusal("dataset.decrypt", name + ": file " + rel + " is not a Parquet file with an encrypted footer");
  }

  /** The footer key metadata of an AES_GCM_V1 file with an encrypted footer; nothing else is read. */
  private static byte[] footerKeyMetadata(byte[] tail, byte[] window, String name, String rel) {
    if (window == null || !Arrays.equals(Arrays.copyOfRange(tail, 4, 8), ENCRYPTED_MAGIC)) {
      throw notEncrypted(name, rel);
    }
    FileCryptoMetaData crypto;
    try (InputStream in = new ByteArrayInputStream(window)) {
      crypto = Util.readFileCryptoMetaData(in);
    } catch (IOException | RuntimeException e) {
      throw new Refusal("dataset.decrypt", name + ": file " + rel + " has no readable crypto metadata");
    }
    if (crypto.getEncryption_algorithm() == null || !crypto.getEncryption_algorithm().isSetAES_GCM_V1()) {
      throw new Refusal("dataset.decrypt", name + ": file " + rel + " is not encrypted with AES_GCM_V1");
    }
    byte[] keyMetadata = crypto.getKey_metadata();
    if (keyMetadata == null || keyMetadata.length == 0) {
      throw new Refusal("dataset.decrypt", name + ": file " + rel + " names no footer key");
    }
    return keyMetadata;
  }

  /** Copy the part of buffer[0:n], which starts at file offset {@code at}, that falls in target. */
  private static void copyOverlap(byte[] buffer, int n, long at, byte[] target, long targetStart) {
    if (target == null || targetStart < 0) {
      return;
    }
    long from = Math.max(at, targetStart);
    long to = Math.min(at + n, targetStart + target.length);
    if (from < to) {
      System.arraycopy(buffer, (int) (from - at), target, (int) (from - targetStart), (int) (to - from));
    }
  }

  private static Refusal truncated(String name, String rel, long actual, long expected) {
    return new Refusal("dataset.file_truncated",
        name + ": file " + rel + " is " + actual + " bytes, the manifest says " + expected);
  }
}
