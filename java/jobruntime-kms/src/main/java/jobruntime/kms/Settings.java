package jobruntime.kms;

import java.util.Set;
import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.crypto.ParquetCipher;
import org.apache.parquet.crypto.keytools.KeyToolkit;
import org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory;

/**
 * What a confidential native read or write is told, through the Hadoop configuration that
 * Spark builds from the query's options (jobruntime/native/options.py writes them). Names,
 * paths, digests and sizes only: no key is ever in the configuration.
 *
 * <p>The PME settings are checked, not trusted: uniform encryption under the dataset's key id,
 * AES_GCM_V1, encrypted footer, double wrapping, key material inside the file, this KMS
 * client, and the cache scope of the dataset and its agent. Anything else is refused
 * ({@code config.invalid}) before a byte is encrypted or decrypted.
 */
final class Settings {
  static final String DATASET = "jobruntime.dataset";
  static final String KEY_ID = "jobruntime.key.id";
  static final String SOCKET = "jobruntime.keyagent.socket";
  static final String SOCKET_ENV = "JOB_KEYAGENT_SOCKET";
  static final String URI = "jobruntime.uri";
  static final String ROOT = "jobruntime.root";
  static final String FILES = "jobruntime.files";
  static final String WRITE_ID = "jobruntime.write.id";
  static final String INSTANCE_ID = "jobruntime-key-agent";
  static final String FACTORY = "parquet.crypto.factory.class";

  static final Set<Integer> KEK_LENGTHS = Set.of(16, 24, 32);
  static final Set<Integer> WRAPPED_LENGTHS = Set.of(44, 52, 60);

  final String dataset;
  final String keyId;
  final String socket;
  final String uri;

  private Settings(String dataset, String keyId, String socket, String uri) {
    this.dataset = dataset;
    this.keyId = keyId;
    this.socket = socket;
    this.uri = uri;
  }

  /** Whether this configuration is a confidential read or write of ours at all. */
  static boolean confidential(Configuration conf) {
    return conf.getTrimmed(DATASET) != null;
  }

  /** The dataset, key id and agent socket: what the KMS client needs. */
  static Settings keys(Configuration conf) {
    String dataset = required(conf, DATASET);
    String socket = required(conf, SOCKET);
    String keyId = conf.getTrimmed(KEY_ID);
    String uri = conf.getTrimmed(URI, dataset);
    return new Settings(dataset, keyId, socket, uri);
  }

  /** This process's agent: the pod's own where it says so, else the one the query names. */
  String agentSocket() {
    String env = System.getenv(SOCKET_ENV);
    return env != null && !env.isEmpty() ? env : socket;
  }

  /** The per-dataset, per-agent scope of Parquet's KMS-client and KEK caches. */
  static String scope(String dataset, String socket) {
    return "jobruntime|" + dataset + "|" + socket;
  }

  /** Every setting a read needs, checked. */
  static Settings forRead(Configuration conf) {
    Settings s = keys(conf);
    s.checkCommon(conf);
    return s;
  }

  /** Every setting a write needs, checked: uniform encryption under the dataset's key id. */
  static Settings forWrite(Configuration conf) {
    Settings s = keys(conf);
    if (s.keyId == null) {
      throw refused(KEY_ID + " is required to write " + s.dataset);
    }
    s.checkCommon(conf);
    expect(conf, PropertiesDrivenCryptoFactory.UNIFORM_KEY_PROPERTY_NAME, s.keyId);
    for (String unset : new String[] {
      PropertiesDrivenCryptoFactory.FOOTER_KEY_PROPERTY_NAME,
      PropertiesDrivenCryptoFactory.COLUMN_KEYS_PROPERTY_NAME
    }) {
      if (conf.getTrimmed(unset) != null && !conf.getTrimmed(unset).isEmpty()) {
        throw refused(unset + " must not be set: uniform encryption only");
      }
    }
    String algorithm = conf.getTrimmed(
        PropertiesDrivenCryptoFactory.ENCRYPTION_ALGORITHM_PROPERTY_NAME,
        PropertiesDrivenCryptoFactory.ENCRYPTION_ALGORITHM_DEFAULT);
    if (!ParquetCipher.AES_GCM_V1.toString().equals(algorithm)) {
      throw refused("the encryption algorithm must be AES_GCM_V1");
    }
    if (conf.getBoolean(PropertiesDrivenCryptoFactory.PLAINTEXT_FOOTER_PROPERTY_NAME, false)) {
      throw refused("footers must be encrypted");
    }
    return s;
  }

  private void checkCommon(Configuration conf) {
    expect(conf, KeyToolkit.KMS_CLIENT_CLASS_PROPERTY_NAME, KeyAgentKmsClient.class.getName());
    expect(conf, KeyToolkit.KMS_INSTANCE_ID_PROPERTY_NAME, INSTANCE_ID);
    expect(conf, KeyToolkit.KEY_ACCESS_TOKEN_PROPERTY_NAME, scope(dataset, socket));
    if (!conf.getBoolean(KeyToolkit.DOUBLE_WRAPPING_PROPERTY_NAME, true)) {
      throw refused("double wrapping is required");
    }
    if (!conf.getBoolean(KeyToolkit.KEY_MATERIAL_INTERNAL_PROPERTY_NAME, true)) {
      throw refused("key material must be stored in the files");
    }
  }

  private static void expect(Configuration conf, String name, String value) {
    if (!value.equals(conf.getTrimmed(name))) {
      throw refused(name + " must be " + value);
    }
  }

  private static String required(Configuration conf, String name) {
    String value = conf.getTrimmed(name);
    if (value == null || value.isEmpty()) {
      throw refused(name + " is not set");
    }
    return value;
  }

  static Refusal refused(String message) {
    return new Refusal("config.invalid", "confidential Parquet: " + message);
  }
}
