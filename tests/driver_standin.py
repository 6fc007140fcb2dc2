"""The driver's side of a cancel without Spark: the production ``CancelWatch`` alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.job.handoff import CancelWatch
from jobruntime.signing.trustroot import TrustRoot


class DriverStandIn:
    """Watches the pod volume as the driver does; ``cancelled`` is set on a verified order."""

    def __init__(self, emu: EmulatorProcess, bundle: Path, run_id: str) -> None:
        self.cancelled = threading.Event()
        root = TrustRoot.load(emu.trust_root)
        self.watch = CancelWatch(bundle, root, run_id, self.cancelled.set, every=0.1).start()


def wait_for(predicate: Callable[[], Any], seconds: float) -> bool:
    """Poll until ``predicate`` holds or a generous deadline passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False
