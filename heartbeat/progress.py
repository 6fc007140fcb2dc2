"""How far the driver got, from Spark's REST API on the pod's loopback.

It never raises: a driver that is starting or busy reads as "no progress", and one that
has gone (its Spark stopped before the final heartbeat) keeps its last reading, so
progress reported to the control plane only ever advances.
"""

from __future__ import annotations

from typing import Any

import requests

from jobruntime.controlplane.api import Progress


class SparkProgress:
    def __init__(self, ui_url: str, run_id: str | None = None, timeout: float = 2.0) -> None:
        self.ui_url = ui_url.rstrip("/")
        # The driver names its application after the run (``jobruntime-<job>-<run id>``):
        # another Spark application on the same port is never read as this run's.
        self.run_id = run_id
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # loopback only, never through a proxy
        self._last = Progress()

    def _get(self, path: str) -> Any:
        resp = self._session.get(f"{self.ui_url}/api/v1{path}", timeout=self._timeout)
        resp.raise_for_status()
        return resp.json()

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
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError):
            return self._last
        done = [s for s in stages if s.get("status") in ("COMPLETE", "SKIPPED")]
        self._last = Progress(
            jobs_done=sum(1 for j in jobs if j.get("status") in ("SUCCEEDED", "FAILED")),
            jobs_total=len(jobs),
            stages_done=len(done),
            stages_total=len(stages),
            tasks_done=sum(int(s.get("numCompleteTasks", 0)) for s in stages),
            tasks_total=sum(int(s.get("numTasks", 0)) for s in stages),
        )
        return self._last
