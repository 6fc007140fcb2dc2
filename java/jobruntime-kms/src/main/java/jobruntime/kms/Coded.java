package jobruntime.kms;

/** An exception that carries one of the runtime's stable error codes (docs/errors.md). */
public interface Coded {
  String code();
}
