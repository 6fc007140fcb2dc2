"""A TCP proxy on 127.0.0.1 that can stall connections: the storage fault injector.

A stalled connection is accepted and its request read, but nothing is forwarded and
nothing answered, so the client sees exactly what a hung storage front end gives: no
response until its read timeout. Other connections are piped to the upstream port.
The upstream port can change (``retarget``), so a restarted server behind the proxy
keeps the address its clients were given.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class StallingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._to_stall = 0
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self.connections = 0
        self.forwarded = 0
        self.stalled = 0
        self.stalled_bytes = 0
        self.given_up = 0
        """Stalled connections the client closed itself: it timed out waiting."""
        self.gave_up = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._thread.start()

    def stall_next(self, n: int) -> None:
        """Stall the next ``n`` connections."""
        with self._lock:
            self._to_stall = n

    def retarget(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                stall = self._to_stall > 0
                self._to_stall -= 1 if stall else 0
                self._sockets.append(conn)
            target = self._stall if stall else self._forward
            threading.Thread(target=target, args=(conn,), daemon=True).start()

    def _stall(self, conn: socket.socket) -> None:
        with self._lock:
            self.stalled += 1
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:  # the client closed: it gave up on us
                    with self._lock:
                        self.given_up += 1
                    self.gave_up.set()
                    break
                with self._lock:
                    self.stalled_bytes += len(data)

    def _forward(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            conn.close()  # the server is down: the client sees a reset and retries
            return
        upstream.settimeout(None)
        with self._lock:
            self.forwarded += 1
            self._sockets.append(upstream)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            with suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        back.start()
        pipe(conn, upstream)
        back.join()
        conn.close()
        upstream.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with suppress(OSError):
                    s.close()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
