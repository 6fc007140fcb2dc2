"""The driver entry program ``spark-submit`` runs for every job.

In order: load the verified bundle, check the module's digest again and import
exactly those bytes, validate the parameters, start Spark with the confidential
data source, run the job, and report the outputs' manifest digests and the
outcome to the control plane. Exit codes (docs/driver.md): 0 success, 2
configuration, 16 module changed after verification, 20 control plane,
24 dataset refused, 25 parameters, 26 the job failed, 70 unexpected.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from jobruntime.controlplane.api import CompleteRequest, OutputReport
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.errors import ConfigError, JobRuntimeError
from jobruntime.job import module as job_module
from jobruntime.job.context import JobContext
from jobruntime.job.errors import JobCancelledError, JobError
from jobruntime.job.log import JobLogger
from jobruntime.spec.bundle import VerifiedBundle


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"${name} is not set")
    return value


def _client() -> ControlPlaneClient:
    token = Path(_env("JOB_VERIFIER_TOKEN_FILE")).read_text().strip()
    ca = os.environ.get("JOB_CA_BUNDLE")
    return ControlPlaneClient(
        _env("JOB_CONTROL_PLANE_URL"), token, ca_bundle=Path(ca) if ca else None
    )


CANCELLING = threading.Event()


def _announce(shared: Path, spark: Any) -> None:
    """Tell the pod's sidecars who the driver is and where its REST API listens."""
    (shared / "driver.pid").write_text(str(os.getpid()))
    url = spark.sparkContext.uiWebUrl
    if url:
        (shared / "driver-ui.url").write_text(url)

    def on_term(signum: int, frame: FrameType | None) -> None:
        CANCELLING.set()
        spark.sparkContext.cancelAllJobs()

    signal.signal(signal.SIGTERM, on_term)


def _finish(shared: Path, outcome: str) -> None:
    tmp = shared / ".driver-outcome.tmp"
    tmp.write_text(json.dumps({"outcome": outcome}))
    tmp.replace(shared / "driver-outcome.json")


def run() -> int:
    bundle = VerifiedBundle.load(Path(_env("JOB_BUNDLE_DIR")))
    spec = bundle.spec
    socket = _env("JOB_KEYAGENT_SOCKET")
    path = Path(os.environ.get("JOB_MODULE_PATH") or bundle.receipt.module_path)
    # 1. The module is the one verified, byte for byte, and it imports.
    module = job_module.load(path, spec.module)
    entry = job_module.entry(module, spec.module.entry)
    # 2. Parameters validate before any data is touched.
    params = job_module.params(module, dict(spec.parameters))
    # 3. Spark, with the confidential data source.
    from pyspark.sql import SparkSession

    from jobruntime.datasource import register

    spark = SparkSession.builder.appName(f"jobruntime-{spec.job_id}-{spec.run_id}").getOrCreate()
    register(spark)
    shared = Path(_env("JOB_BUNDLE_DIR"))
    _announce(shared, spark)
    log = JobLogger(spec.run_id, spec.job_id)
    ctx = JobContext(spark=spark, params=params, spec=spec, socket=socket, log=log)
    outcome, reason, failure = "succeeded", None, None
    try:
        # 4. The job itself.
        log.info("job_started")
        entry(ctx)
        log.info("job_finished")
    except JobRuntimeError as exc:
        outcome, reason, failure = "failed", exc.code, exc
    except Exception as exc:  # the job's own error: its type, never its message (data)
        if os.environ.get("JOB_DEBUG"):  # a developer's own run, on their own data
            traceback.print_exc()
        outcome, reason = "failed", f"job.failed: {type(exc).__name__}"
        failure = JobError(f"{spec.job_id} raised {type(exc).__name__}")
    if CANCELLING.is_set():
        # The control plane already holds the run as cancelled: nothing to report.
        _finish(shared, "cancelled")
        spark.stop()
        raise JobCancelledError(f"{spec.run_id} was cancelled by the control plane")
    # 5. Report what was published and how it ended.
    outputs = [
        OutputReport(dataset=name, version=v, manifest_digest=d)
        for name, (v, d) in sorted(ctx.published().items())
    ]
    with _client() as client:
        client.complete(
            spec.run_id, CompleteRequest(outcome=outcome, reason=reason, outputs=outputs)
        )
    _finish(shared, outcome)
    spark.stop()
    if failure is not None:
        raise failure
    for out in outputs:
        print(f"jobruntime: wrote {out.dataset} version {out.version} ({out.manifest_digest})")
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        return run()
    except JobRuntimeError as exc:
        print(f"jobruntime-driver: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        print(f"jobruntime-driver: internal: unexpected {type(exc).__name__}", file=sys.stderr)
        if os.environ.get("JOB_DEBUG"):
            raise
        return 70


if __name__ == "__main__":
    raise SystemExit(main())
