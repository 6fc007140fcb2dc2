"""Start and stop a real emulator subprocess on a free port of 127.0.0.1.

Used by the demo, ``jobruntime submit``, the tests and the benchmarks: one way to start
it, wait for it (the URL file, then an authenticated health call) and stop it. Its
output goes to ``emulator.log`` in its state directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.dev.process import ManagedProcess
from jobruntime.emulator.state import URL_FILE, load_tokens
from jobruntime.errors import JobRuntimeError


class EmulatorProcess:
    def __init__(
        self,
        state: Path,
        owners: tuple[str, ...] = ("org-a", "org-b"),
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.state = state
        self.owners = owners
        self.tls = tls
        self.proc: ManagedProcess | None = None
        self.port = 0
        self.url = ""

    @property
    def trust_root(self) -> Path:
        return self.state / "trust-root.json"

    def owner_key(self, owner: str) -> Path:
        return self.state / "owners" / f"{owner}.key"

    def token(self, principal: str) -> str:
        return load_tokens(self.state).token(principal)

    @property
    def cert(self) -> Path | None:
        return self.tls[0] if self.tls else None

    def client(self, principal: str, retry_for: float = 5.0) -> ControlPlaneClient:
        return ControlPlaneClient(
            self.url, self.token(principal), ca_bundle=self.cert, retry_for=retry_for
        )

    def start(self) -> EmulatorProcess:
        (self.state / URL_FILE).unlink(missing_ok=True)
        owners = [a for o in self.owners for a in ("--owner", o)]
        cmd = [
            sys.executable,
            "-m",
            "jobruntime",
            "emulator",
            "serve",
            "--state",
            str(self.state),
            "--port",
            str(self.port),
            *owners,
        ]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        self.proc = ManagedProcess("emulator", cmd, self.state / "emulator.log", append=True)
        self.proc.start().wait_ready((self.state / URL_FILE).exists, 30, "URL file")
        self.url = (self.state / URL_FILE).read_text().strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        with self.client("operator") as c:
            c.health()
        return self

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @classmethod
    def attach(cls, state: Path) -> EmulatorProcess | None:
        """An emulator already serving this state (started elsewhere), if it answers."""
        url_file = state / URL_FILE
        if not url_file.exists():
            return None
        emu = cls(state)
        emu.url = url_file.read_text().strip()
        try:
            with emu.client("operator", retry_for=1.0) as c:
                c.health()
        except JobRuntimeError:
            return None
        return emu

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
