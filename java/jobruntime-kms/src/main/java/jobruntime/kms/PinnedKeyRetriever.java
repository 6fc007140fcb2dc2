package jobruntime.kms;

import java.security.MessageDigest;
import org.apache.parquet.crypto.DecryptionKeyRetriever;
import org.apache.parquet.crypto.KeyAccessDeniedException;

/**
 * Hands out a file's data key only for the footer key metadata of the bytes that were hashed
 * and checked ({@link FileCheck}); anything else (a column key of non-uniform encryption;
 * another file's footer, were a read ever not served the verified footer by
 * {@link VerifiedLocalFileSystem}) is refused: a second lock behind that one. The key itself comes from Parquet's own
 * double-unwrapping ({@code FileKeyUnwrapper}), whose KEKs the key agent unwraps.
 */
final class PinnedKeyRetriever implements DecryptionKeyRetriever {
  private final byte[] pinned;
  private final DecryptionKeyRetriever unwrapper;
  private final String name;
  private final String rel;

  PinnedKeyRetriever(byte[] pinned, DecryptionKeyRetriever unwrapper, String name, String rel) {
    this.pinned = pinned.clone();
    this.unwrapper = unwrapper;
    this.name = name;
    this.rel = rel;
  }

  @Override
  public byte[] getKey(byte[] keyMetadata) throws KeyAccessDeniedException {
    if (keyMetadata == null || !MessageDigest.isEqual(keyMetadata, pinned)) {
      throw new Refusal("dataset.file_corrupt", name + ": file " + rel + " is not the file that was verified");
    }
    return unwrapper.getKey(keyMetadata);
  }
}
