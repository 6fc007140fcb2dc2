"""The driver entry program ``spark-submit`` runs for every job.

In order: refuse a Spark configuration that weakens spark-conf/ (before any of
Spark starts), load the verified bundle and verify it again against the pinned trust
root, check the module's digest again and import exactly those bytes, validate the
parameters, start Spark with the confidential data source, run the job, and leave
the outcome and the outputs' manifest digests for the heartbeat sidecar, whose
final signed heartbeat reports them (the driver holds no control-plane token).
Exit codes (docs/driver.md): 0 success, 2 configuration, 11-13 the bundle does not
verify, 16 module changed after verification, 24 dataset refused, 25 parameters,
26 the job failed, 29 cancelled, 31 Spark configuration refused, 70 unexpected. A
failure names the exception's type and the job file's line, never its message
(messages quote data).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from jobruntime.controlplane.api import OutputReport
from jobruntime.entrypoint import debugging, run_main
from jobruntime.errors import ConfigError, JobRuntimeError
from jobruntime.job import module as job_module
from jobruntime.job.context import JobContext
from jobruntime.job.errors import JobCancelledError, JobError
from jobruntime.job.failure import describe_failure, leaky_spark_settings, quiet_python_logging
from jobruntime.job.handoff import DRIVER_OUTCOME, DRIVER_UI, CancelWatch, write_atomically
from jobruntime.job.log import JobLogger
from jobruntime.native.errors import typed as native_refusal
from jobruntime.signing.roots import RootLike
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.sparkconf.check import refuse_insecure_spark_conf
from jobruntime.spec.models import JobRunSpec
from jobruntime.verification.consumer import load_pod_bundle


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"${name} is not set")
    return value


CANCELLING = threading.Event()


def _announce(shared: Path, spark: Any, trust_root: RootLike, run_id: str) -> CancelWatch:
    """Tell the sidecars where Spark's REST API listens; obey a cancel, from either side.

    The heartbeat sidecar hands a verified cancel order over the memory volume (re-verified
    here); the kubelet's SIGTERM (the pod deleted) cancels the same way.
    """
    url = spark.sparkContext.uiWebUrl
    if url:
        write_atomically(shared, DRIVER_UI, url)

    def cancel() -> None:
        CANCELLING.set()
        spark.sparkContext.cancelAllJobs()

    def on_term(signum: int, frame: FrameType | None) -> None:
        cancel()

    signal.signal(signal.SIGTERM, on_term)
    return CancelWatch(shared, trust_root, run_id, cancel).start()


def _finish(
    shared: Path, outcome: str, reason: str | None = None, outputs: Sequence[OutputReport] = ()
) -> None:
    """The driver's last word, for the heartbeat sidecar to sign and send: it holds no token."""
    body = {
        "outcome": outcome,
        "reason": reason,
        "outputs": [o.model_dump() for o in outputs],
    }
    write_atomically(shared, DRIVER_OUTCOME, json.dumps(body))


@dataclass(frozen=True)
class _Prepared:
    """Everything steps 0-4 established: verified, imported, validated, Spark started."""

    spark: Any
    spec: JobRunSpec
    trust_root: Path
    entry: Callable[[JobContext], object]
    params: Any
    module: ModuleType
    path: Path
    socket: str


def _prepare() -> _Prepared:
    # 0. Spark's effective configuration, before any of Spark starts (sparkconf.*, exit 31).
    refuse_insecure_spark_conf()
    shared = Path(_env("JOB_BUNDLE_DIR"))
    # 1. The bundle, re-verified against the pinned trust root; nothing unverified is used.
    pinned, bundle = load_pod_bundle(
        "jobruntime-driver",
        shared,
        trust_root=os.environ.get("JOB_TRUST_ROOT"),
        module=os.environ.get("JOB_MODULE_PATH"),
        needs_control_plane=False,
    )
    spec = bundle.verified.spec
    socket = _env("JOB_KEYAGENT_SOCKET")
    del os.environ["JOB_KEYAGENT_SOCKET"]  # ctx's data source knows it; the module need not
    path = pinned.module_path(spec.module.import_name)
    # 2. The module is the one verified, byte for byte, and it imports.
    module = job_module.load(path, spec.module)
    entry = job_module.entry(module, spec.module.entry)
    # 3. Parameters validate before any data is touched.
    params = job_module.params(module, dict(spec.parameters))
    # 4. Spark, with the confidential data source.
    from pyspark.sql import SparkSession

    from jobruntime.datasource import register

    spark = SparkSession.builder.appName(f"jobruntime-{spec.job_id}-{spec.run_id}").getOrCreate()
    leaks = leaky_spark_settings(dict(spark.sparkContext.getConf().getAll()))
    if leaks:  # these would write exception text (data values) past the log configuration
        spark.stop()
        raise ConfigError(f"Spark settings would write exception text out: {', '.join(leaks)}")
    register(spark)
    return _Prepared(spark, spec, pinned.trust_root, entry, params, module, path, socket)


def run() -> int:
    try:
        job = _prepare()
    except JobRuntimeError as exc:
        # Refused before the job started: the sidecar's final heartbeat reports it now,
        # instead of the control plane timing the run out. Nothing was read or written.
        named = os.environ.get("JOB_BUNDLE_DIR")
        if named:
            with suppress(OSError):  # no volume to leave it on: the refusal still stands
                _finish(Path(named), "failed", exc.code)
        raise
    shared = Path(_env("JOB_BUNDLE_DIR"))
    spark, spec, module, path = job.spark, job.spec, job.module, job.path
    params, entry, socket = job.params, job.entry, job.socket
    root = TrustRoot.load(job.trust_root)  # the root the bundle was verified against
    watch = _announce(shared, spark, root, spec.run_id)
    log = JobLogger(spec.run_id, spec.job_id, fields=job_module.log_fields(module))
    ctx = JobContext(spark=spark, params=params, spec=spec, log=log, agent_socket=socket)
    outcome, reason, failure = "succeeded", None, None
    try:
        # 5. The job itself.
        log.info("job_started")
        entry(ctx)
        log.info("job_finished")
    except JobRuntimeError as exc:
        outcome, reason, failure = "failed", exc.code, exc
    except Exception as exc:  # the job's own error: its type and line, never its message
        if debugging():  # development mode, a developer's own data only
            traceback.print_exc()
        # A refusal of the native Parquet path's JVM code (a file that fails its manifest
        # digest, the key agent's "no"), wrapped by Spark: reported with its own code.
        refused = native_refusal(exc)
        if refused is not None:
            outcome, reason, failure = "failed", refused.code, refused
        else:
            where = describe_failure(exc, path)
            outcome, reason = "failed", f"job.failed: {where}"
            failure = JobError(f"{spec.job_id}: {where}")
    watch.stop()
    if CANCELLING.is_set():
        # The control plane already holds the run as cancelled: nothing to report.
        _finish(shared, "cancelled")
        spark.stop()
        raise JobCancelledError(f"{spec.run_id} was cancelled by the control plane")
    # 6. What was published and how it ended, for the sidecar's final signed heartbeat.
    outputs = [
        OutputReport(dataset=name, version=v, manifest_digest=d)
        for name, (v, d) in sorted(ctx.published().items())
    ]
    _finish(shared, outcome, reason, outputs)
    spark.stop()
    if failure is not None:
        raise failure
    for out in outputs:
        print(f"jobruntime: wrote {out.dataset} version {out.version} ({out.manifest_digest})")
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    quiet_python_logging()
    return run_main("jobruntime-driver", run)


if __name__ == "__main__":
    raise SystemExit(main())
