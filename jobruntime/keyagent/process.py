"""Start a real key-agent sidecar process for a verified run, as a pod would.

Used by the demo, the tests and the benchmarks; the socket goes in a fresh
directory under /dev/shm (memory-backed), and everything is removed on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobruntime.emulator.process import EmulatorProcess


class KeyAgentProcess:
    def __init__(self, emu: EmulatorProcess, bundle_dir: Path) -> None:
        self.emu, self.bundle_dir = emu, bundle_dir
        self.dir = Path(tempfile.mkdtemp(prefix="keyagent-", dir="/dev/shm"))
        self.socket = self.dir / "agent.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> KeyAgentProcess:
        token = self.dir / "token"
        token.write_text(self.emu.token("verifier"))
        cmd = [
            sys.executable,
            "-m",
            "jobruntime.keyagent",
            "--socket",
            str(self.socket),
            "--bundle-dir",
            str(self.bundle_dir),
            "--control-plane-url",
            self.emu.url,
            "--token-file",
            str(token),
            "--tee",
            "emulated",
            "--emulated-tee-dir",
            str(self.emu.state / "tee"),
        ]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=dict(os.environ))
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.__exit__()
                raise RuntimeError(f"key agent did not start: {err[-2000:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        for f in self.dir.iterdir():
            f.unlink()
        self.dir.rmdir()
