"""Helpers the fault tests share: find the processes a test started, wait on conditions.

Every process lookup is narrowed by a marker only the calling test's processes carry
(a path under its own temporary directory), so a test never touches another run's
processes, however many suites share the machine.
"""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from jobruntime.dev import procs

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy (a non-empty list, a state); fail at
    the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(every)


def pids_with(marker: str, *more: str) -> list[int]:
    """Live processes whose arguments mention ``marker`` (a path the test created) and
    every one of ``more``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = procs.cmdline(int(entry.name))
            if args is not None and all(any(m in a for a in args) for m in (marker, *more)):
                found.append(int(entry.name))
    return sorted(found)


def group_leader_with(marker: str, *more: str) -> int | None:
    """The process group leader (started by ``ManagedProcess``) whose arguments mention
    ``marker`` and ``more``: killing its group kills what it started too."""
    for pid in pids_with(marker, *more):
        with suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                return pid
    return None


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group: no handler, no ``finally`` runs in it."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def files_under(root: Path, suffix: str = "") -> list[Path]:
    """Regular files below ``root`` (none if it does not exist), optionally by suffix."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())


def needles(sentinels: Iterable[str], keys: Iterable[bytes]) -> list[bytes]:
    """What must never be found on disk: plaintext sentinels and every encoding of a key."""
    found = [s.encode() for s in sentinels]
    for k in keys:
        found += [k, k.hex().encode(), base64.b64encode(k)]
    return found


def assert_nothing_holds(places: Iterable[Path], secrets: list[bytes]) -> int:
    """No file under ``places`` contains any of ``secrets``; returns how many were read."""
    scanned = 0
    for place in places:
        for f in [place] if place.is_file() else files_under(place):
            with suppress(FileNotFoundError):
                data = f.read_bytes()
                scanned += 1
                for secret in secrets:
                    assert secret not in data, f"{f} holds a plaintext value or a key"
    return scanned


class Injector:
    """Runs ``fault`` on a thread once ``ready`` holds (polled up to ``timeout``); records
    when it fired and any error, so the test can assert the fault really landed mid-run."""

    def __init__(self, ready: Callable[[], object], fault: Callable[[], None], timeout: float):
        self.ready = ready
        self.fault = fault
        self.timeout = timeout
        self.fired = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Injector:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fault", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            wait_for(self.ready, self.timeout, "moment to inject the fault")
            self.fault()
            self.fired.set()
        except BaseException as exc:  # reported by check(), in the test's thread
            self.error = exc

    def check(self) -> None:
        """The fault landed (joined first); re-raise whatever stopped it."""
        if self._thread is not None:
            self._thread.join(timeout=self.timeout)
        if self.error is not None:
            raise AssertionError(f"the fault was not injected: {self.error}") from self.error
        assert self.fired.is_set(), "the fault was never injected"
