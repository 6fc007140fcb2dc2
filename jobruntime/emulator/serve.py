"""Run the emulator as a real HTTP server on 127.0.0.1.

The socket is bound (port 0 picks a free one) and listening before uvicorn starts,
and the URL is written to ``emulator.url`` in the state directory, so callers
never race the server's start.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import uvicorn

from jobruntime.emulator.app import create_app
from jobruntime.emulator.state import URL_FILE


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    os.umask(0o077)  # the database (every master key), its WAL files and logs: ours alone
    app = create_app(state_dir)
    sock = bind(host, port)
    scheme = "https" if tls_cert else "http"
    url = f"{scheme}://{host}:{sock.getsockname()[1]}"
    tmp = state_dir / f".{URL_FILE}.{os.getpid()}"
    tmp.write_text(url + "\n")
    tmp.replace(state_dir / URL_FILE)
    print(f"control-plane emulator listening on {url} (state in {state_dir})", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )
    uvicorn.Server(config).run(sockets=[sock])
