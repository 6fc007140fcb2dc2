package jobruntime.kms;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Base64;
import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.crypto.KeyAccessDeniedException;
import org.apache.parquet.crypto.keytools.KmsClient;

/**
 * A Parquet {@link KmsClient} whose master keys stay in the pod's key agent.
 *
 * <p>{@code wrapKey}/{@code unwrapKey} send one {@code wrap}/{@code unwrap} request each to
 * the agent's Unix socket (docs/keyagent-protocol.md); the agent authorises by dataset name
 * and key id, so the client is bound to one dataset, read from the Hadoop configuration
 * ({@code jobruntime.dataset}), and PME's {@code masterKeyIdentifier} is the key id, exactly
 * as the Python data source's client maps them (jobruntime/dataset/pme.py). A file naming
 * another master key than {@code jobruntime.key.id} is refused before the agent is asked.
 *
 * <p>It never talks to the KMS, never sees a master key and writes nothing to disk. The
 * socket is {@code $JOB_KEYAGENT_SOCKET} where the pod sets it (an executor pod's own agent),
 * else {@code jobruntime.keyagent.socket} (the driver's, from the query's options), as in
 * jobruntime/datasource/options.py. A refusal carries the agent's code ({@link Coded}).
 */
public final class KeyAgentKmsClient implements KmsClient {
  private AgentClient agent;
  private String dataset;
  private String keyId;

  @Override
  public void initialize(
      Configuration conf, String kmsInstanceID, String kmsInstanceURL, String accessToken)
      throws KeyAccessDeniedException {
    Settings settings = Settings.keys(conf);
    this.agent = new AgentClient(settings.agentSocket());
    this.dataset = settings.dataset;
    this.keyId = settings.keyId;
  }

  @Override
  public String wrapKey(byte[] keyBytes, String masterKeyIdentifier) throws KeyAccessDeniedException {
    check(masterKeyIdentifier);
    ObjectNode request = keyed("wrap", masterKeyIdentifier);
    request.put("key", Base64.getEncoder().encodeToString(keyBytes));
    JsonNode answer = agent.call(request);
    String wrapped = answer.path("wrapped").asText(null);
    if (wrapped == null || !Settings.WRAPPED_LENGTHS.contains(decodedLength(wrapped))) {
      throw new Refusal("keyagent.error", "the key agent's wrap answer for " + dataset + " is malformed");
    }
    return wrapped;
  }

  @Override
  public byte[] unwrapKey(String wrappedKey, String masterKeyIdentifier) throws KeyAccessDeniedException {
    check(masterKeyIdentifier);
    ObjectNode request = keyed("unwrap", masterKeyIdentifier);
    request.put("wrapped", wrappedKey);
    JsonNode answer = agent.call(request);
    byte[] key = decode(answer.path("key").asText(""));
    if (key == null || !Settings.KEK_LENGTHS.contains(key.length)) {
      throw new Refusal("keyagent.error", "the key agent's unwrap answer for " + dataset + " is malformed");
    }
    return key;
  }

  private ObjectNode keyed(String op, String masterKeyIdentifier) {
    ObjectNode request = AgentClient.request(op);
    request.put("dataset", dataset);
    request.put("key_id", masterKeyIdentifier);
    return request;
  }

  private void check(String masterKeyIdentifier) {
    if (agent == null) {
      throw new Refusal("config.invalid", "the key-agent KMS client was not initialised");
    }
    if (keyId != null && !keyId.equals(masterKeyIdentifier)) {
      throw Refusal.of(
          "keyagent.key_mismatch",
          "a file of " + dataset + " names a master key this reader was not given (" + keyId + " expected)");
    }
  }

  private static byte[] decode(String text) {
    try {
      return Base64.getDecoder().decode(text);
    } catch (IllegalArgumentException e) {
      return null;
    }
  }

  private static int decodedLength(String text) {
    byte[] raw = decode(text);
    return raw == null ? -1 : raw.length;
  }

  @Override
  public String toString() { // never a key; the dataset and where its agent is
    return "KeyAgentKmsClient(" + dataset + " via " + (agent == null ? "-" : agent.socket()) + ")";
  }

  /** Key-agent requests this JVM has made, for tests and benchmarks (a count, nothing else). */
  public static long agentCalls() {
    return AgentClient.CALLS.get();
  }
}
