package jobruntime.kms;

import java.io.EOFException;
import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSInputStream;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.impl.OpenFileParameters;

/**
 * The local file system of a confidential native read ({@code fs.file.impl} in the read's
 * options): a confidential file opens only once its crypto factory has checked it
 * ({@link VerifiedFiles}), and reads of it return the verified bytes of its first 4 bytes and
 * footer region, and nothing past its verified size. Every other byte Parquet decodes is in
 * an AES-GCM module under the key and file AAD those bytes pin.
 */
public final class VerifiedLocalFileSystem extends LocalFileSystem {
  @Override
  public FSDataInputStream open(Path f, int bufferSize) throws IOException {
    VerifiedFiles.Verified verified = VerifiedFiles.get(f);
    if (verified == null) {
      throw new Refusal("dataset.file_extra", "file " + f.getName() + " was opened before it was verified");
    }
    long length = getFileStatus(f).getLen();
    if (length != verified.size) {
      throw new Refusal("dataset.file_truncated",
          "file " + f.getName() + " is " + length + " bytes, " + verified.size + " were verified");
    }
    return new FSDataInputStream(new Overlay(super.open(f, bufferSize), verified));
  }

  /** The file as storage has it, for the check itself ({@link FileCheck}). */
  FSDataInputStream openUnverified(Path f) throws IOException {
    return super.open(f, getConf().getInt("io.file.buffer.size", 4096));
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
