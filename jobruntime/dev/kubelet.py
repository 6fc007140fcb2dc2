"""One pod's containers started and stopped in a kubelet's order, as local processes.

Init containers run one at a time, in order; each must exit 0, or the pod fails with
that container's termination message (the file at ``terminationMessagePath``, else
the last lines of its log: ``FallbackToLogsOnError``). A native sidecar (an init
container with ``restartPolicy: Always``) is started and the next container waits
until its startup probe passes (run here as a local command, every period, up to the
failure threshold), or fails the pod if the sidecar exits first. Then the main
container. When the main container has exited, or the pod is stopped, the sidecars
get SIGTERM in reverse order, then SIGKILL after the grace period, as a kubelet ends
a pod whose main containers are done.

Not emulated: restarting a sidecar that exits (``restartPolicy: Always``), liveness
and readiness probes, resource limits. Every process starts in its own session, so
stopping it stops what it started (a Worker's executors, the driver's JVM and Python
workers).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobruntime.attestation.providers.choose import EMULATED_HOST_DATA_ENV
from jobruntime.dev.errors import ContainerStatus, PodFailedError
from jobruntime.dev.launch import LocalContainer, LocalPodPlan
from jobruntime.dev.process import ManagedProcess

TERMINATION_LIMIT = 4096
"""Bytes of a termination message Kubernetes keeps."""
FALLBACK_LINES = 80
"""``FallbackToLogsOnError``: at most 80 lines (and 2048 bytes) of the log's end."""
FALLBACK_BYTES = 2048


@dataclass
class Kubelet:
    """Runs one pod; :meth:`stop` is safe to call at any time, and more than once."""

    plan: LocalPodPlan
    log_dir: Path
    grace: float = 30.0
    init_timeout: float = 120.0
    running: dict[str, ManagedProcess] = field(default_factory=dict)
    statuses: dict[str, ContainerStatus] = field(default_factory=dict)
    launched_host_data: str | None = None
    """What the last container started was launched with (measured at each launch)."""

    def log(self, name: str) -> Path:
        return self.log_dir / self.plan.name / f"{name}.log"

    def start_init(self) -> None:
        """Init containers in order, sidecars up; raises :class:`PodFailedError`."""
        for c in self.plan.containers:
            if c.kind == "init":
                self._run_to_completion(c)
            elif c.kind == "sidecar":
                self._start_sidecar(c)

    def start_main(self) -> ManagedProcess:
        (main,) = [c for c in self.plan.containers if c.kind == "main"]
        return self._start(main)

    def main_name(self) -> str:
        (main,) = [c for c in self.plan.containers if c.kind == "main"]
        return main.launch.name

    def wait_main(self, timeout: float) -> ContainerStatus:
        """The main container's end (stopped after ``timeout``); then the sidecars stop."""
        name = self.main_name()
        proc = self.running[name]
        code = proc.wait(timeout)
        self._end(proc)
        self.running.pop(name, None)
        status = self._status(name, code, "" if code == 0 else None)
        self.statuses[name] = status
        self.stop()
        return status

    def stop(self) -> None:
        """Main container first, then sidecars in reverse order: SIGTERM, grace, SIGKILL."""
        for name in reversed(list(self.running)):
            proc = self.running.pop(name)
            self._end(proc)
            self.statuses.setdefault(name, self._status(name, proc.returncode, ""))

    def _end(self, proc: ManagedProcess) -> None:
        """Stop the process and whatever it started (its session's group), if still there.

        Also when it has exited itself: a Worker's executors can outlive it.
        """
        proc.stop(self.grace)

    # --- containers -----------------------------------------------------------------

    def _start(self, c: LocalContainer) -> ManagedProcess:
        name = c.launch.name
        self.launched_host_data = self.plan.pod.environment(name)[EMULATED_HOST_DATA_ENV]
        proc = self.plan.pod.managed(name, self.log(name), cwd=c.cwd).start()
        self.running[name] = proc
        return proc

    def _run_to_completion(self, c: LocalContainer) -> None:
        name = c.launch.name
        proc = self._start(c)
        code = proc.wait(self.init_timeout)
        if code is None:
            self._end(proc)
            self.running.pop(name, None)
            self._fail(name, None, f"did not finish within {self.init_timeout:.0f} s")
        self._end(proc)
        self.running.pop(name, None)
        if code != 0:
            self._fail(name, code, None)
        self.statuses[name] = self._status(name, code, "")

    def _start_sidecar(self, c: LocalContainer) -> None:
        """Started; the next container waits for its startup probe, within the probe's
        budget (failure threshold x period), polled faster than the period here."""
        name = c.launch.name
        proc = self._start(c)
        if c.probe is None:  # a sidecar without a startup probe is ready once started
            return
        budget = max(c.probe_failures, 1) * max(c.probe_period, 0.1)
        deadline = time.monotonic() + budget
        while True:
            if proc.returncode is not None:
                self.running.pop(name, None)
                self._fail(name, proc.returncode, None)
            if _probe(c.probe):
                return
            if time.monotonic() > deadline:
                self._fail(name, None, f"startup probe did not pass within {budget:.0f} s")
            time.sleep(0.05)

    def _fail(self, name: str, code: int | None, reason: str | None) -> None:
        status = self._status(name, code, reason)
        self.statuses[name] = status
        raise PodFailedError(status)

    def _status(self, name: str, code: int | None, reason: str | None) -> ContainerStatus:
        """``reason`` None: the termination message, or the log's end (FallbackToLogsOnError)."""
        if reason is None:
            reason = _termination_message(self.plan.volumes.termination(name), self.log(name))
        return ContainerStatus(self.plan.name, name, code, reason, self.log(name))


def _probe(command: tuple[str, ...]) -> bool:
    try:
        return subprocess.run(list(command), timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _termination_message(path: Path, log: Path) -> str:
    try:
        message = path.read_bytes()[:TERMINATION_LIMIT].decode(errors="replace").strip()
    except OSError:
        message = ""
    if message:
        return message
    try:
        lines = log.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LINES:]
    except OSError:
        return ""
    return "\n".join(lines)[-FALLBACK_BYTES:].strip()
