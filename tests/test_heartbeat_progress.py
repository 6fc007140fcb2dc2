"""The sidecar reads progress from its own run's Spark application only.

Another Spark application on the same machine may hold the UI port the sidecar looks at
first (another run, a benchmark, a second copy of the suite): its counts must never be
reported as this run's. Served here by a real HTTP server shaped like Spark's REST API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from heartbeat.progress import SparkProgress

RUN = "run-0f4c2a51-7d1e-4a39-9d0e-1b2c3d4e5f60"


def _job(status: str) -> dict[str, str]:
    return {"status": status}


APPS: dict[str, dict[str, Any]] = {
    "app-other": {"name": "someone-elses-job", "jobs": [_job("SUCCEEDED")] * 3},
    "app-ours": {"name": f"jobruntime-overlap-{RUN}", "jobs": [_job("SUCCEEDED"), _job("RUNNING")]},
}


@pytest.fixture
def spark_ui() -> Iterator[tuple[str, list[str]]]:
    listed = ["app-other", "app-ours"]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")  # api v1 applications [id [jobs|stages]]
            if parts == ["api", "v1", "applications"]:
                body: Any = [{"id": a, "name": APPS[a]["name"]} for a in listed]
            elif len(parts) == 5 and parts[3] in APPS:
                body = APPS[parts[3]]["jobs"] if parts[4] == "jobs" else []
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", listed
    finally:
        server.shutdown()
        server.server_close()


def test_only_the_runs_own_application_is_read(spark_ui: tuple[str, list[str]]) -> None:
    url, listed = spark_ui
    progress = SparkProgress(url, RUN)
    assert (progress.read().jobs_done, progress.read().jobs_total) == (1, 2)
    # Our application gone, another one on the port: the last reading stands.
    listed.remove("app-ours")
    assert (progress.read().jobs_done, progress.read().jobs_total) == (1, 2)


def test_another_application_alone_is_never_reported(spark_ui: tuple[str, list[str]]) -> None:
    url, listed = spark_ui
    listed.remove("app-ours")
    assert SparkProgress(url, RUN).read().jobs_done == 0
