"""One way to run a local helper process: start, wait until ready, log, stop.

Every harness that starts something on this machine (the emulator, a Spark standalone
master or worker, a pod's container, Azurite, the Service Bus test broker) goes through
:class:`ManagedProcess`:

- started in its own session, so its pid is its process group and stopping the group
  stops what it started (a Worker's executors, a driver's JVM and Python workers);
- stdout and stderr drained to one log file (created 0600), so a pipe never fills and
  blocks it, and a failure can quote the log's last lines;
- ready when a caller's check says so, within a deadline, failing at once if the
  process exits first;
- stopped with SIGTERM to the group, a grace period, then SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from jobruntime.dev import procs
from jobruntime.errors import JobRuntimeError
from jobruntime.fsutil import open_private

T = TypeVar("T")


class ProcessStartError(JobRuntimeError):
    """A local helper process exited, or did not become ready, before its deadline."""

    code = "dev.process_not_ready"
    exit_code = 34


class ManagedProcess:
    """A local process with its output in ``log``; :meth:`stop` is safe at any time."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        append: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.append = append
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessStartError(f"{self.name} was never started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ManagedProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open_private(self.log, append=self.append) as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def wait_ready(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``check`` until it returns a value; fail if the process ends or time is up."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value is not None and value is not False:
                return value
            code = self.returncode
            if code is not None:
                raise ProcessStartError(
                    f"{self.name} exited with status {code} before {what}: {self.tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"{self.name}: no {what} within {timeout:.0f} s: {self.tail()}"
                )
            time.sleep(0.05)

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, or None if it is still running after ``timeout``."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM its group, then SIGKILL after ``grace``; also when it already exited
        (what it started can outlive it). Returns its exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None or procs.group_members(proc.pid):
            procs.stop_groups([proc.pid], grace)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        return proc.returncode

    def tail(self, lines: int = 12) -> str:
        return procs.log_tail(self.log, lines)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
