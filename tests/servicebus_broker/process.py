"""Start, stop and restart the test broker as a subprocess on 127.0.0.1.

Like ``jobruntime.emulator.process.EmulatorProcess``: the broker binds port 0 (or
the port it is given) and writes the port it got to a file, which is how we wait
for it. ``restart()`` keeps the same port, so clients holding the connection
string can reconnect.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
# The SDK only takes this exact spelling (value compared case-sensitively to "true").
EMULATOR_FLAG = "UseDevelopmentEmulator=true"


def connection_string(host: str, port: int) -> str:
    """A Service Bus connection string for a plain-AMQP emulator at host:port.

    With ``UseDevelopmentEmulator=true`` azure-servicebus 7.15 keeps the port of
    ``Endpoint`` (without the flag it strips it and uses TLS on 5671).
    """
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        f"SharedAccessKey=SAS_KEY_VALUE;{EMULATOR_FLAG}"
    )


class BrokerError(RuntimeError):
    """The broker exited or did not start in time."""


class BrokerProcess:
    def __init__(
        self,
        workdir: Path | None = None,
        port: int = 0,
        lock_duration: float = 30.0,
        max_delivery_count: int = 10,
        verbose: bool = True,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="sb-broker-")) if workdir is None else workdir
        self.port = port
        self.host = "127.0.0.1"
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self.verbose = verbose
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def port_file(self) -> Path:
        return self.workdir / "broker.port"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.port)

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "tests.servicebus_broker", "--host", self.host]
        cmd += ["--port", str(self.port), "--port-file", str(self.port_file)]
        cmd += ["--lock-duration", str(self.lock_duration)]
        cmd += ["--max-delivery-count", str(self.max_delivery_count)]
        if self.verbose:
            cmd.append("--verbose")
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        try:
            while not self.port_file.exists():
                if self.proc.poll() is not None:
                    raise BrokerError(
                        f"broker exited with {self.proc.returncode}: {self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise BrokerError(f"broker did not start in {timeout:.0f} s: {self.log_tail()}")
                time.sleep(0.02)
            self.port = int(self.port_file.read_text().strip())
            with socket.create_connection((self.host, self.port), timeout=5):
                pass
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port (the queues start empty)."""
        if not self.port:
            raise BrokerError("restart() needs a broker that has started once")
        self.stop()
        self.start()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
