package jobruntime.kms;

import java.io.IOException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.crypto.DecryptionPropertiesFactory;
import org.apache.parquet.crypto.EncryptionPropertiesFactory;
import org.apache.parquet.crypto.FileDecryptionProperties;
import org.apache.parquet.crypto.FileEncryptionProperties;
import org.apache.parquet.crypto.ParquetCryptoRuntimeException;
import org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory;
import org.apache.parquet.hadoop.api.WriteSupport.WriteContext;

/**
 * Spark's {@code parquet.crypto.factory.class} for confidential datasets.
 *
 * <p><b>Writing</b>: the settings are checked ({@link Settings#forWrite}: uniform AES_GCM_V1
 * under the dataset's key id, encrypted footer, double wrapping, internal key material, the
 * key agent's KMS client), then Parquet's own {@link PropertiesDrivenCryptoFactory} makes the
 * file's keys: a random data key per file, wrapped by a KEK, which the agent wraps.
 *
 * <p><b>Reading</b>, and why digests rather than the AAD prefix: every file is decoded only
 * if it is listed in the manifest the driver verified and has the manifest's size and footer
 * digest (schema 2; the whole file's SHA-256 under schema 1), checked here in the JVM before
 * any byte is decrypted, exactly as the Python reader does ({@link FileCheck}). The
 * alternative, binding (dataset, version, path) into PME's AAD prefix, was not taken:
 * pyarrow's key tools (the Python writer and reader, and owners' tools) cannot set or check
 * an AAD prefix; a part's final path and version are only known
 * at commit, after it is encrypted; and the manifest's digests already name each file. The
 * check and the decoding are two reads of storage, so the decoding is served the checked
 * footer bytes (below), and only their key metadata gets a key ({@link PinnedKeyRetriever}).
 * A verified file is remembered (by path, size and digest) with its pinned key metadata and
 * its verified footer bytes ({@link VerifiedFiles}), and every open of it through the read's
 * {@link VerifiedLocalFileSystem} is served those bytes: what Parquet decodes is what was
 * checked, at every open, whatever storage holds by then. Plaintext files are never accepted.
 */
public final class ConfidentialCryptoFactory
    implements EncryptionPropertiesFactory, DecryptionPropertiesFactory {
  @Override
  public FileEncryptionProperties getFileEncryptionProperties(
      Configuration conf, Path tempFilePath, WriteContext fileWriteContext)
      throws ParquetCryptoRuntimeException {
    Settings.forWrite(conf);
    return new PropertiesDrivenCryptoFactory().getFileEncryptionProperties(conf, tempFilePath, fileWriteContext);
  }

  @Override
  public FileDecryptionProperties getFileDecryptionProperties(Configuration conf, Path filePath)
      throws ParquetCryptoRuntimeException {
    Settings settings = Settings.forRead(conf);
    if (filePath == null) {
      throw new Refusal("dataset.file_extra", settings.uri + ": a file without a path cannot be verified");
    }
    ManifestFiles.Entry entry = ManifestFiles.of(conf).entry(filePath, settings.uri);
    byte[] pinned = verified(conf, filePath, entry, settings);
    return decryption(conf, filePath, pinned, settings.uri, entry.path);
  }

  /**
   * Forget every verified file, so the next read of each hashes it again: what a fresh JVM
   * does (benchmarks measure that first read). The pins of reads in progress are unaffected.
   */
  public static void forgetVerified() {
    VerifiedFiles.clear();
  }

  /** Decryption that only accepts {@code pinned} footer key metadata, and no plaintext file. */
  static FileDecryptionProperties decryption(
      Configuration conf, Path path, byte[] pinned, String name, String rel) {
    FileDecryptionProperties standard =
        new PropertiesDrivenCryptoFactory().getFileDecryptionProperties(conf, path);
    return FileDecryptionProperties.builder()
        .withKeyRetriever(new PinnedKeyRetriever(pinned, standard.getKeyRetriever(), name, rel))
        .build();
  }

  private static byte[] verified(Configuration conf, Path path, ManifestFiles.Entry entry, Settings s) {
    String entryKey = s.uri + "\n" + entry.size + "\n" + entry.whole + entry.sha256;
    VerifiedFiles.Verified known = VerifiedFiles.get(path);
    if (known != null && known.entryKey.equals(entryKey)) {
      return known.footerKeyMetadata;
    }
    FileSystem fs;
    try {
      fs = path.getFileSystem(conf);
    } catch (IOException e) {
      throw new Refusal("storage.io", s.uri + ": no file system for " + entry.path);
    }
    if (!(fs instanceof VerifiedLocalFileSystem)) {
      throw Settings.refused("a confidential read opens files through " + VerifiedLocalFileSystem.class.getName());
    }
    FileCheck check = entry.whole
        ? FileCheck.whole(fs, path, entry.size, entry.sha256, s.uri, entry.path)
        : FileCheck.footer(fs, path, entry.size, entry.sha256, s.uri, entry.path);
    VerifiedFiles.put(path, new VerifiedFiles.Verified(entryKey, check));
    return check.footerKeyMetadata;
  }
}
