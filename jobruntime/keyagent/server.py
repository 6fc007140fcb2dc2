"""The key agent: the pod's local KMS, for processes of its own uid.

One thread accepts; each connection gets a thread that checks the peer's
credentials and then answers request lines until the peer hangs up, goes idle or
the agent closes. Master keys are released through a :class:`KeyCache` (one release
per dataset) and never leave the process: requests get KEKs wrapped or unwrapped
and manifest MACs computed or checked under them, as the spec's grants allow
(:mod:`jobruntime.keyagent.protocol`). Nothing key-like goes to logs or messages.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from jobruntime.dataset.errors import DecryptError
from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.cache import KeyCache
from jobruntime.keyagent.errors import (
    BadRequestError,
    BusyError,
    NoRegistryError,
    PeerRefusedError,
    RequestTooLargeError,
    UnwrapFailedError,
)
from jobruntime.keyagent.listener import open_listener, remove_if_ours
from jobruntime.keyagent.peercred import peer_credentials
from jobruntime.keyagent.protocol import (
    KEK_BYTES,
    MAX_REQUEST,
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
    dataset_field,
    decode,
    digest_field,
    encode,
    error_body,
    hex64_field,
    key_id_field,
    manifest_digest_field,
    read_line,
    version_field,
)
from jobruntime.keyagent.source import KeySource, VersionSource

if TYPE_CHECKING:
    from jobruntime.dataset.keyops import MasterKeyOps

log = logging.getLogger("jobruntime.keyagent")

JOIN_TIMEOUT = 5.0


class KeyAgentServer:
    """Binds at construction (so a bad directory fails before anything else starts).

    ``require_memory_fs=False`` allows a socket on a disk filesystem: for tests and
    local work only. ``idle_timeout`` closes connections that send nothing, so a
    stuck reader cannot hold a thread for the life of the pod.
    """

    def __init__(
        self,
        socket_path: Path,
        source: KeySource,
        *,
        require_memory_fs: bool = True,
        idle_timeout: float = 300.0,
        max_connections: int = 64,
    ) -> None:
        self.socket_path = Path(os.path.abspath(socket_path))
        self._cache = KeyCache(source)
        self._source = source
        self._uid = os.geteuid()
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._listener, self._file_id = open_listener(self.socket_path, memory_fs=require_memory_fs)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            OP_UNWRAP: self._unwrap,
            OP_WRAP: self._wrap,
            OP_KEY_CHECK: self._key_check,
            OP_MAC: self._mac,
            OP_CHECK_MAC: self._check_mac,
            OP_LATEST_VERSION: self._latest_version,
            OP_RECORD_VERSION: self._record_version,
            OP_HEALTH: self._health,
        }
        log.info(
            "key agent listening on %s for uid %d; %d dataset(s) in the spec",
            self.socket_path,
            self._uid,
            len(self._cache.grants),
        )

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> KeyAgentServer:
        """Serve on a background thread; :meth:`close` stops and joins it."""
        self._thread = threading.Thread(target=self.serve_forever, name="keyagent", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept connections until :meth:`stop` or :meth:`close`."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._listener and not self._stopping.is_set():
                        self._accept()

    def stop(self) -> None:
        """Make :meth:`serve_forever` return. Safe in a signal handler: it only sets and writes."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def close(self) -> None:
        """Stop, hang up on every client, remove the socket file, overwrite the keys."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = dict(self._conns)
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT)
        self._listener.close()
        remove_if_ours(self.socket_path, self._file_id)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading it
        for thread in conns.values():
            thread.join(JOIN_TIMEOUT)
        self._cache.close()
        self._wake_r.close()
        self._wake_w.close()
        log.info("key agent on %s closed", self.socket_path)

    def __enter__(self) -> KeyAgentServer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- connections ----------------------------------------------------------------

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # out of descriptors, say: keep serving the others
            log.warning("accept failed: %s", exc.strerror)
            return
        conn.settimeout(self._idle_timeout)
        thread = threading.Thread(
            target=self._serve_connection, args=(conn,), name="keyagent-conn", daemon=True
        )
        with self._lock:
            if self._closed:
                conn.close()
                return
            busy = len(self._conns) >= self._max_connections
            if not busy:
                self._conns[conn] = thread
        if busy:  # a bounded number of threads, whatever a local peer opens
            log.warning("refused a connection: %d already open", self._max_connections)
            with contextlib.suppress(OSError):
                conn.sendall(encode(error_body(BusyError("too many open connections"))))
            conn.close()
            return
        thread.start()

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            peer = peer_credentials(conn)
            if peer.uid != self._uid:
                log.warning(
                    "refused peer pid=%d uid=%d: the agent serves uid %d only",
                    peer.pid,
                    peer.uid,
                    self._uid,
                )
                refusal = PeerRefusedError(f"uid {peer.uid} is not the key agent's uid {self._uid}")
                conn.sendall(encode(error_body(refusal)))
                return
            log.debug("peer pid=%d uid=%d connected", peer.pid, peer.uid)
            with conn.makefile("rb") as stream:
                while True:
                    try:
                        line = read_line(stream, MAX_REQUEST)
                    except RequestTooLargeError as exc:
                        log.warning("peer pid=%d sent a request line over the limit", peer.pid)
                        conn.sendall(encode(error_body(exc)))
                        return
                    if line is None:
                        return
                    conn.sendall(encode(self._answer(line, peer.pid)))
        except OSError:
            pass  # the peer hung up, went idle, or close() shut the connection
        finally:
            with self._lock:
                self._conns.pop(conn, None)
            conn.close()

    def _answer(self, line: bytes, pid: int) -> dict[str, Any]:
        try:
            request = decode(line)
            op = request.get("op")
            handler = self._handlers.get(op) if isinstance(op, str) else None
            if handler is None:
                raise BadRequestError(f"unknown op; expected one of {', '.join(self._handlers)}")
            return handler(request)
        except JobRuntimeError as exc:
            log.info("request from pid %d refused: %s", pid, exc.one_line())
            return error_body(exc)
        except Exception as exc:  # a bug: say what kind, never what data
            log.error("unexpected %s answering pid %d", type(exc).__name__, pid)
            return error_body(JobRuntimeError(f"unexpected {type(exc).__name__}"))

    # --- operations: fields are checked before the grant, the grant before any release ---

    def _ops(self, request: dict[str, Any], *, write: bool) -> MasterKeyOps:
        return self._cache.ops(dataset_field(request), key_id_field(request), write=write)

    def _unwrap(self, request: dict[str, Any]) -> dict[str, Any]:
        base64_field(request, "wrapped", WRAPPED_BYTES)  # checked, then passed on as sent
        ops = self._ops(request, write=False)
        try:
            kek = ops.unwrap(request["wrapped"])
        except DecryptError:
            raise UnwrapFailedError(
                f"a key of dataset {request['dataset']!r} does not unwrap under key {ops.key_id}"
            ) from None
        return {"ok": True, "key": b64(kek)}

    def _wrap(self, request: dict[str, Any]) -> dict[str, Any]:
        kek = base64_field(request, "key", KEK_BYTES)
        return {"ok": True, "wrapped": self._ops(request, write=True).wrap(kek)}

    def _key_check(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "key_check": self._ops(request, write=False).key_check()}

    def _mac(self, request: dict[str, Any]) -> dict[str, Any]:
        digest = digest_field(request)
        return {"ok": True, "mac": self._ops(request, write=True).mac(digest)}

    def _check_mac(self, request: dict[str, Any]) -> dict[str, Any]:
        digest, mac = digest_field(request), hex64_field(request, "mac")
        return {"ok": True, "valid": self._ops(request, write=False).check_mac(digest, mac)}

    def _health(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "datasets": sorted(self._cache.grants), "cached": self._cache.cached()}

    def _latest_version(self, request: dict[str, Any]) -> dict[str, Any]:
        dataset = dataset_field(request)
        self._cache.authorize(dataset, write=False)
        found = self._registry().latest_version(dataset)
        return {
            "ok": True,
            "version": found[0] if found else None,
            "digest": found[1] if found else None,
        }

    def _record_version(self, request: dict[str, Any]) -> dict[str, Any]:
        dataset = dataset_field(request)
        version, digest = version_field(request), manifest_digest_field(request)
        self._cache.authorize(dataset, write=True)
        self._registry().record_version(dataset, version, digest)
        return {"ok": True}

    def _registry(self) -> VersionSource:
        """Dataset versions pass through to the control plane, via the key source."""
        if not hasattr(self._source, "latest_version"):
            raise NoRegistryError("this key agent's source records no dataset versions")
        registry: VersionSource = self._source  # type: ignore[assignment]
        return registry
