"""Start, stop and restart the test broker as a subprocess on 127.0.0.1.

Like ``jobruntime.dev.emulator.EmulatorProcess``: the broker binds port 0 (or
the port it is given) and writes the port it got to a file, which is how we wait
for it. ``restart()`` keeps the same port, so clients holding the connection
string can reconnect.
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
from pathlib import Path

from jobruntime.dev.process import ManagedProcess

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
        self.proc: ManagedProcess | None = None

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
        self.proc = ManagedProcess("broker", cmd, self.log_path, cwd=REPO_ROOT, append=True)
        try:
            self.proc.start().wait_ready(self.port_file.exists, timeout, "port file")
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
        if self.proc is not None:
            self.proc.stop()
        self.proc = None

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
