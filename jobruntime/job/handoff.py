"""What the driver and the heartbeat sidecar hand each other on the pod's memory volume.

On Kubernetes the two run in separate containers, each in its own PID namespace: the
sidecar cannot signal the driver (a pid read from the volume names another process in
its own namespace, or none). So a cancel travels as a file, not a signal:

1. The sidecar verifies the control plane's signed ``CancelOrder`` for its run and
   writes the envelope, unchanged, to ``cancel-order.json`` (write then rename).
2. The driver watches for that file and verifies the envelope again against its own
   pinned trust root before it obeys: whoever can write to the volume (nobody outside
   the pod, but the order is cheap to check) still cannot stop a run with a forgery.

The other way, the driver leaves its outcome and its Spark UI address for the sidecar.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobruntime.signing.orders import OrderError, verify_cancel
from jobruntime.signing.roots import RootLike
from jobruntime.spec.rules import utcnow

DRIVER_OUTCOME = "driver-outcome.json"
DRIVER_UI = "driver-ui.url"
CANCEL_ORDER = "cancel-order.json"
MAX_ORDER_BYTES = 64 * 1024
"""A signed cancel order is well under 2 KiB; anything larger is not read."""

log = logging.getLogger("jobruntime.driver")


def write_atomically(directory: Path, name: str, text: str) -> None:
    """Readers see the old file or the whole new one, never half of it."""
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    tmp.replace(directory / name)


def hand_cancel_to_driver(directory: Path, order: Any) -> None:
    """The sidecar's step 1: the verified envelope, as the control plane signed it."""
    write_atomically(directory, CANCEL_ORDER, json.dumps(order, sort_keys=True))


def read_cancel_order(directory: Path, trust_root: RootLike, run_id: str) -> bool:
    """The driver's step 2: True only for an order the control plane signed for this run."""
    path = directory / CANCEL_ORDER
    try:
        with path.open("rb") as f:
            data = f.read(MAX_ORDER_BYTES + 1)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot read %s: %s", CANCEL_ORDER, exc.strerror)
        return False
    try:
        if len(data) > MAX_ORDER_BYTES:
            raise OrderError(f"{CANCEL_ORDER} is over {MAX_ORDER_BYTES} bytes")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested past the limit
            raise OrderError(f"{CANCEL_ORDER} is not JSON") from None
        verify_cancel(obj, trust_root, run_id, utcnow())
    except OrderError as exc:
        log.warning("ignored a cancel: %s", exc.one_line())
        return False
    return True


class CancelWatch:
    """A daemon thread in the driver: obeys the first verified order, ignores the rest."""

    def __init__(
        self,
        directory: Path,
        trust_root: RootLike,
        run_id: str,
        on_cancel: Callable[[], None],
        *,
        every: float = 0.5,
    ) -> None:
        self._args = (directory, trust_root, run_id)
        self._on_cancel = on_cancel
        self._every = every
        self._stop = threading.Event()
        self._seen: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._loop, name="cancel-watch", daemon=True)

    def start(self) -> CancelWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _changed(self) -> bool:
        """Re-verify only a file that changed since the last look (a forgery logs once)."""
        try:
            st = os.stat(self._args[0] / CANCEL_ORDER)
        except OSError:
            return False
        seen = (st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return False
        self._seen = seen
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            if self._changed() and read_cancel_order(*self._args):
                log.info("cancel ordered by the control plane: cancelling the Spark jobs")
                self._on_cancel()
                return
