package jobruntime.kms;

import java.util.Set;
import org.apache.parquet.crypto.KeyAccessDeniedException;
import org.apache.parquet.crypto.ParquetCryptoRuntimeException;

/**
 * A refusal with the runtime's stable code (docs/errors.md): the key agent's, passed on as
 * it answered, or a dataset check's ({@code dataset.file_corrupt}, ...). The message is
 * {@code "<code>: <message>"}, so the code survives every wrapping by Spark; messages name
 * datasets, files and key ids, never key material or values.
 */
public class Refusal extends ParquetCryptoRuntimeException implements Coded {
  private static final long serialVersionUID = 1L;

  /** The agent's codes that mean "not allowed": a KmsClient throws KeyAccessDeniedException. */
  static final Set<String> ACCESS_DENIED =
      Set.of("keyagent.not_in_spec", "keyagent.not_writable", "keyagent.key_mismatch",
          "keyagent.peer_refused");

  private final String code;

  public Refusal(String code, String message) {
    super(code + ": " + oneLine(message));
    this.code = code;
  }

  @Override
  public String code() {
    return code;
  }

  /** The exception for an agent's refusal: KeyAccessDeniedException where Parquet expects it. */
  static RuntimeException of(String code, String message) {
    return ACCESS_DENIED.contains(code) ? new Denied(code, message) : new Refusal(code, message);
  }

  static String oneLine(String message) {
    return String.join(" ", message.trim().split("\\s+"));
  }

  /** An agent's "not allowed": a {@link KeyAccessDeniedException} carrying the code. */
  public static final class Denied extends KeyAccessDeniedException implements Coded {
    private static final long serialVersionUID = 1L;
    private final String code;

    Denied(String code, String message) {
      super(code + ": " + oneLine(message));
      this.code = code;
    }

    @Override
    public String code() {
      return code;
    }
  }
}
