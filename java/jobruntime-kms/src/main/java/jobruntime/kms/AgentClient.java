package jobruntime.kms;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.security.auth.module.UnixSystem;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.nio.file.attribute.UserPrincipal;
import java.util.concurrent.atomic.AtomicLong;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;

/**
 * The pod's key agent, over its Unix socket: the line protocol of docs/keyagent-protocol.md.
 *
 * <p>One short connection per call (as the Python client): calls are rare, one per KEK, and a
 * connection of our own needs no locking between the tasks of an executor. The agent's uid
 * is checked (SO_PEERCRED) before anything is sent: a KEK is never written to a process of
 * another user. Nothing is logged and nothing is written to disk; an answer's key field
 * lives in the returned object only.
 */
final class AgentClient {
  static final int MAX_REQUEST = 4096; // bytes of one request line, newline included
  static final int MAX_RESPONSE = 64 * 1024;
  static final long TIMEOUT_MILLIS = 30_000;
  private static final ObjectMapper JSON = new ObjectMapper();
  /** Requests made by this JVM (all agents, all datasets): for tests and benchmarks. */
  static final AtomicLong CALLS = new AtomicLong();

  private final Path socket;

  AgentClient(String socket) {
    this.socket = Path.of(socket);
  }

  Path socket() {
    return socket;
  }

  /** A request object to fill in: {"op": op}. */
  static ObjectNode request(String op) {
    ObjectNode node = JSON.createObjectNode();
    node.put("op", op);
    return node;
  }

  /** The answer of a successful call; a refusal is thrown with the agent's code. */
  JsonNode call(ObjectNode request) {
    String dataset = request.path("dataset").asText("");
    byte[] line;
    try {
      line = (JSON.writeValueAsString(request) + "\n").getBytes(StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new Refusal("keyagent.bad_request", "the request could not be encoded");
    }
    if (line.length > MAX_REQUEST) {
      throw new Refusal(
          "keyagent.request_too_large", "a request for " + dataset + " is over the protocol's limit");
    }
    CALLS.incrementAndGet();
    byte[] answer;
    try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
      try {
        channel.connect(UnixDomainSocketAddress.of(socket));
      } catch (IOException e) {
        throw unavailable("cannot connect", e);
      }
      checkPeer(channel);
      answer = exchange(channel, line);
    } catch (IOException e) {
      throw unavailable("the exchange failed", e);
    }
    JsonNode body;
    try {
      body = JSON.readTree(answer);
    } catch (IOException e) {
      throw new Refusal("keyagent.error", "the key agent's answer is not JSON");
    }
    if (body == null || !body.isObject()) {
      throw new Refusal("keyagent.error", "the key agent's answer is not a JSON object");
    }
    if (body.path("ok").isBoolean() && body.path("ok").asBoolean()) {
      return body;
    }
    throw Refusal.of(body.path("code").asText("keyagent.error"),
        body.path("message").asText("the key agent refused"));
  }

  /** The agent must run as this JVM's uid, as the agent requires of us. */
  private void checkPeer(SocketChannel channel) throws IOException {
    UnixDomainPrincipal peer = channel.getOption(ExtendedSocketOptions.SO_PEERCRED);
    long uid = new UnixSystem().getUid();
    UserPrincipal own =
        FileSystems.getDefault().getUserPrincipalLookupService().lookupPrincipalByName(Long.toString(uid));
    if (peer == null || !own.equals(peer.user())) {
      throw new Refusal(
          "keyagent.peer_refused",
          "the process listening at " + socket + " does not run as this JVM's uid " + uid);
    }
  }

  /** Send one line, read one line: with a deadline, since a stuck agent must not hang a task. */
  private byte[] exchange(SocketChannel channel, byte[] line) throws IOException {
    long deadline = System.currentTimeMillis() + TIMEOUT_MILLIS;
    channel.configureBlocking(false);
    ByteArrayOutputStream received = new ByteArrayOutputStream(256);
    try (Selector selector = Selector.open()) {
      ByteBuffer out = ByteBuffer.wrap(line);
      ByteBuffer in = ByteBuffer.allocate(4096);
      SelectionKey key = channel.register(selector, SelectionKey.OP_WRITE);
      while (true) {
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) {
          throw new Refusal("keyagent.unavailable", "the key agent at " + socket + " timed out");
        }
        selector.select(left);
        if (key.isValid() && key.isWritable() && out.hasRemaining()) {
          try {
            channel.write(out);
          } catch (IOException e) {
            out.position(out.limit()); // refused and hung up: its answer may still be readable
          }
          if (!out.hasRemaining()) {
            key.interestOps(SelectionKey.OP_READ);
          }
        }
        if (key.isValid() && key.isReadable()) {
          in.clear();
          int n = channel.read(in);
          if (n < 0) {
            throw new Refusal(
                "keyagent.unavailable", "the key agent at " + socket + " hung up without answering");
          }
          for (int i = 0; i < n; i++) {
            byte b = in.get(i);
            if (b == '\n') {
              return received.toByteArray();
            }
            received.write(b);
          }
          if (received.size() > MAX_RESPONSE) {
            throw new Refusal("keyagent.error", "the key agent's answer is over the size limit");
          }
        }
        selector.selectedKeys().clear();
      }
    }
  }

  private Refusal unavailable(String what, IOException e) {
    String reason = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    return new Refusal(
        "keyagent.unavailable",
        "key agent at " + socket + ": " + what + ": " + reason + "; is the key-agent sidecar running?");
  }
}
