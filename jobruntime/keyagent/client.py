"""The reader's and writer's side: ask the pod's key agent to wrap, unwrap and MAC.

Used in every Spark Python worker, so it imports only the standard library and
opens one short connection per call: pyarrow asks once per file (it caches KEKs),
the manifest code a few times per read or commit. The agent's refusals come back
as the typed errors of :mod:`jobruntime.keyagent.errors`, carrying the agent's code.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobruntime.keyagent.errors import (
    BadRequestError,
    KeyAgentError,
    KeyAgentUnavailableError,
    PeerRefusedError,
    RequestTooLargeError,
    error_for,
)
from jobruntime.keyagent.peercred import peer_credentials
from jobruntime.keyagent.protocol import (
    HEX64,
    KEK_BYTES,
    MAX_RESPONSE,
    OP_CHECK_MAC,
    OP_HEALTH,
    OP_KEY_CHECK,
    OP_LATEST_VERSION,
    OP_MAC,
    OP_RECORD_VERSION,
    OP_UNWRAP,
    OP_WRAP,
    WRAPPED_BYTES,
    b64,
    base64_field,
    decode,
    encode,
    hex64_field,
    read_line,
)


class KeyAgentClient:
    """One short connection per call; each method is one op of :mod:`.protocol`."""

    def __init__(self, socket_path: Path | str, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def unwrap(self, dataset: str, key_id: str, wrapped: str) -> bytes:
        """A KEK unwrapped under the dataset's master key (inputs and outputs)."""
        body = self._keyed(OP_UNWRAP, dataset, key_id, wrapped=wrapped)
        with _answer_for(dataset):
            return base64_field(body, "key", KEK_BYTES)

    def wrap(self, dataset: str, key_id: str, key: bytes) -> str:
        """A KEK wrapped under the dataset's master key (outputs only)."""
        body = self._keyed(OP_WRAP, dataset, key_id, key=b64(key))
        with _answer_for(dataset):
            base64_field(body, "wrapped", WRAPPED_BYTES)
        return str(body["wrapped"])

    def key_check(self, dataset: str, key_id: str) -> str:
        body = self._keyed(OP_KEY_CHECK, dataset, key_id)
        with _answer_for(dataset):
            return hex64_field(body, "key_check")

    def mac(self, dataset: str, key_id: str, digest: bytes) -> str:
        """The manifest MAC of a 32-byte body digest (outputs only)."""
        body = self._keyed(OP_MAC, dataset, key_id, digest=digest.hex())
        with _answer_for(dataset):
            return hex64_field(body, "mac")

    def check_mac(self, dataset: str, key_id: str, digest: bytes, mac: str) -> bool:
        body = self._keyed(OP_CHECK_MAC, dataset, key_id, digest=digest.hex(), mac=mac)
        valid = body.get("valid")
        if not isinstance(valid, bool):
            raise KeyAgentError(f"the key agent's answer for {dataset!r} is malformed: valid")
        return valid

    def latest_version(self, dataset: str) -> tuple[int, str] | None:
        """The control plane's record of the dataset's latest version, via the agent."""
        body = self._call({"op": OP_LATEST_VERSION, "dataset": dataset})
        version, digest = body.get("version"), body.get("digest")
        if version is None:
            return None
        if not isinstance(version, int) or not isinstance(digest, str):
            raise KeyAgentError(f"the key agent's version answer for {dataset!r} is malformed")
        return version, digest

    def record_version(self, dataset: str, version: int, digest: str) -> None:
        self._call(
            {"op": OP_RECORD_VERSION, "dataset": dataset, "version": version, "digest": digest}
        )

    def health(self) -> dict[str, Any]:
        """``{"ok": true, "datasets": [...], "cached": [...]}``: names only."""
        return self._call({"op": OP_HEALTH})

    def _keyed(self, op: str, dataset: str, key_id: str, **fields: str) -> dict[str, Any]:
        return self._call({"op": op, "dataset": dataset, "key_id": key_id, **fields})

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._connect() as sock:
            try:
                sock.sendall(encode(request))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent may have refused us and hung up: its answer is still readable
            except OSError as exc:
                raise self._unavailable("sending the request failed", exc) from None
            try:
                with sock.makefile("rb") as stream:
                    line = read_line(stream, MAX_RESPONSE)
            except RequestTooLargeError:
                raise KeyAgentError("the key agent's answer is over the size limit") from None
            except OSError as exc:
                raise self._unavailable("no answer", exc) from None
        if line is None:
            raise KeyAgentUnavailableError(
                f"the key agent at {self.socket_path} hung up without answering"
            )
        try:
            body = decode(line)
        except BadRequestError:
            raise KeyAgentError("the key agent's answer is not a JSON object") from None
        if body.get("ok") is True:
            return body
        raise error_for(str(body.get("code")), str(body.get("message")))

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(os.fspath(self.socket_path))
            agent = peer_credentials(sock)
        except OSError as exc:
            sock.close()
            raise self._unavailable("cannot connect", exc) from None
        if agent.uid != os.geteuid():
            sock.close()
            raise PeerRefusedError(
                f"the process listening at {self.socket_path} runs as uid {agent.uid}, "
                f"not as this reader's uid {os.geteuid()}"
            )
        return sock

    def _unavailable(self, what: str, exc: OSError) -> KeyAgentUnavailableError:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        return KeyAgentUnavailableError(
            f"key agent at {self.socket_path}: {what}: {reason}; is the key-agent sidecar running?"
        )


@contextmanager
def _answer_for(dataset: str) -> Iterator[None]:
    """An answer field that breaks the protocol's rules is the agent's fault, not ours."""
    try:
        yield
    except BadRequestError as exc:
        raise KeyAgentError(f"the key agent's answer for {dataset!r} is malformed: {exc}") from None


@dataclass(frozen=True)
class AgentKeyOps:
    """A :class:`~jobruntime.dataset.keyops.MasterKeyOps` whose key stays in the key agent.

    What the data source hands to pyarrow's KmsClient and to the manifest code in
    every Spark Python worker; the agent refuses what the spec does not grant.
    """

    client: KeyAgentClient
    dataset: str
    key_id: str

    def wrap(self, secret: bytes) -> str:
        return self.client.wrap(self.dataset, self.key_id, secret)

    def unwrap(self, wrapped: str) -> bytes:
        return self.client.unwrap(self.dataset, self.key_id, wrapped)

    def key_check(self) -> str:
        return self.client.key_check(self.dataset, self.key_id)

    def mac(self, digest: bytes) -> str:
        return self.client.mac(self.dataset, self.key_id, digest)

    def check_mac(self, digest: bytes, mac: str) -> bool:
        if not HEX64.fullmatch(mac):  # not a MAC at all: no need to ask
            return False
        return self.client.check_mac(self.dataset, self.key_id, digest, mac)
