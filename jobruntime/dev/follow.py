"""What ``jobruntime submit`` shows while the driver runs: its job log and Spark progress.

The driver's output goes to a log file (Spark's own lines included); this reads it as
it grows and passes on only the job's ``ctx.log`` lines, which the job logger already
allow-listed and scrubbed, and the driver's one-line result. Progress comes from Spark's
REST API on loopback, as the heartbeat sidecar reads it, at the address the driver
leaves on the pod's volume.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from heartbeat.progress import Progress, SparkProgress
from jobruntime.job.handoff import DRIVER_UI

MAX_LINE = 64 * 1024
"""A longer line (a stack dump of Spark's) is skipped, never buffered without end."""


class LogFollower:
    """The complete lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def lines(self) -> Iterator[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > MAX_LINE:
            self._partial = b""
        for raw in complete:
            if len(raw) <= MAX_LINE:
                yield raw.decode(errors="replace")


def job_line(line: str) -> str | None:
    """A ``ctx.log`` line shown as ``event key=value ...``, the driver's result as is."""
    if line.startswith("jobruntime-driver: ") or line.startswith("jobruntime: wrote "):
        return line
    if not line.startswith('{"run_id"'):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "event" not in record:
        return None
    fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("run_id", "job", "event"))
    return f"job {record.get('job')}: {record['event']} {fields}".rstrip()


class ProgressWatch:
    """Spark's progress for one run, once the driver has said where its UI listens."""

    def __init__(self, bundle_dir: Path, run_id: str) -> None:
        self._ui = bundle_dir / DRIVER_UI
        self._run_id = run_id
        self._spark: SparkProgress | None = None
        self.ui_url: str | None = None

    def read(self) -> Progress | None:
        if self._spark is None:
            try:
                self.ui_url = self._ui.read_text().strip().rstrip("/")
            except OSError:
                return None
            if not self.ui_url:
                return None
            self._spark = SparkProgress(self.ui_url, self._run_id)
        return self._spark.read()


def progress_line(p: Progress) -> str:
    return (
        f"spark: jobs {p.jobs_done}/{p.jobs_total}, stages {p.stages_done}/{p.stages_total}, "
        f"tasks {p.tasks_done}/{p.tasks_total}"
    )
