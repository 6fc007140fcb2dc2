"""The reader's side: ask the pod's key agent for a dataset key.

Used in every Spark Python worker, so it imports only the standard library and
opens one short connection per call: a key is asked for once per reader, and the
agent's cache makes repeated asks cheap. The agent's refusals come back as the
typed errors of :mod:`jobruntime.keyagent.errors`, carrying the agent's code.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
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
    MAX_RESPONSE,
    OP_GET_KEY,
    OP_HEALTH,
    OP_LATEST_VERSION,
    OP_RECORD_VERSION,
    decode,
    encode,
    read_line,
)


class KeyAgentClient:
    def __init__(self, socket_path: Path | str, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def get_key(self, dataset: str) -> bytes:
        body = self._call({"op": OP_GET_KEY, "dataset": dataset})
        key = body.get("key")
        if body.get("dataset") != dataset or not isinstance(key, str):
            raise KeyAgentError(f"the key agent's answer for dataset {dataset!r} is malformed")
        try:
            return base64.b64decode(key, validate=True)
        except binascii.Error:
            raise KeyAgentError(f"the key agent sent no valid key for {dataset!r}") from None

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
