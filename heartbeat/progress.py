"""How far the driver got, from Spark's REST API on the pod's loopback.

It never raises: a driver that is starting or busy reads as "no progress", and one that
has gone (its Spark stopped before the final heartbeat) keeps its last reading, so
progress reported to the control plane only ever advances.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from jobruntime.netget import GetError, get


@dataclass(frozen=True)
class Progress:
    """``api.Progress``: jobs, stages and tasks done and in total."""

    jobs_done: int = 0
    jobs_total: int = 0
    stages_done: int = 0
    stages_total: int = 0
    tasks_done: int = 0
    tasks_total: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


class SparkProgress:
    def __init__(self, ui_url: str, run_id: str | None = None, timeout: float = 2.0) -> None:
        self.ui_url = ui_url.rstrip("/")
        # The driver names its application after the run (``jobruntime-<job>-<run id>``):
        # another Spark application on the same port is never read as this run's.
        self.run_id = run_id
        self._timeout = timeout
        self._last = Progress()

    def _get(self, path: str) -> Any:
        # Loopback: never through a proxy, no redirects.
        return json.loads(get(f"{self.ui_url}/api/v1{path}", timeout=self._timeout))

    def read(self) -> Progress:
        try:
            apps = [
                a
                for a in self._get("/applications")
                if self.run_id is None or str(a.get("name", "")).endswith(f"-{self.run_id}")
            ]
            if not apps:
                return self._last
            app = apps[0]["id"]
            jobs = self._get(f"/applications/{app}/jobs")
            stages = self._get(f"/applications/{app}/stages")
            done = [s for s in stages if s.get("status") in ("COMPLETE", "SKIPPED")]
            self._last = Progress(
                jobs_done=sum(1 for j in jobs if j.get("status") in ("SUCCEEDED", "FAILED")),
                jobs_total=len(jobs),
                stages_done=len(done),
                stages_total=len(stages),
                tasks_done=sum(int(s.get("numCompleteTasks", 0)) for s in stages),
                tasks_total=sum(int(s.get("numTasks", 0)) for s in stages),
            )
        except (GetError, ValueError, KeyError, IndexError, TypeError, AttributeError):
            return self._last
        return self._last
