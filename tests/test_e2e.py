"""End to end: a job module submitted locally runs verified, attested and encrypted.

Real everything: the emulator and its KMS, job-verifier and the key agent as
processes, `spark-submit` on local[2] with spark-conf/, the confidential data
source, the owners' own encrypt and decrypt. Only the TEE is emulated.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobruntime.controlplane.api import RunState
from jobruntime.dataset import owner
from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.dataset.registry import ControlPlaneRegistry
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.dev.submit import DEV_POLICY, SubmitPlan, SubmitResult, driver_reason, submit
from jobruntime.errors import JobRuntimeError
from jobruntime.storage.uri import open_storage
from scripts.synthetic import customers, expected_overlap

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "sentinel-7f3a9c@example.org"


class PlanChange(TypedDict, total=False):
    """What a test changes in a ``World.plan``."""

    master: str
    spark_conf: dict[str, str]
    cluster_state: Path
    heartbeat_interval: float


@dataclass
class World:
    emu: EmulatorProcess
    tmp: Path
    a: pd.DataFrame
    b: pd.DataFrame
    inputs: dict[str, str]
    keys: dict[str, bytes]

    shm: Path

    def plan(self, module: Path, output: str, **change: Unpack[PlanChange]) -> SubmitPlan:
        plan = SubmitPlan(
            module=module,
            inputs=dict(self.inputs),
            outputs={"overlap": f"file://{self.tmp / output}"},
            params={"k": 10},
            state=self.emu.state,
            spark_conf={"spark.local.dir": str(self.tmp / "spark-local")},
            work_root=self.shm,
        )
        return dataclasses.replace(plan, **change)

    def decrypt(self, uri: str, key_id: str) -> pa.Table:
        org = key_id.split("/")[0]
        target = self.tmp / f"{secrets.token_hex(4)}.parquet"
        with self.emu.client(f"owner:{org}") as c:
            key = c.owner_key(key_id)
            self.keys[key_id] = key
            owner.decrypt(
                open_storage(uri),
                uri,
                LocalMasterKey(key_id, key),
                ControlPlaneRegistry(c, uri, key_id),
                target,
            )
        return pq.read_table(target)


def encrypt(
    emu: EmulatorProcess, df: pd.DataFrame, uri: str, key_id: str, rows_per_file: int = 1_000_000
) -> bytes:
    org = key_id.split("/")[0]
    table = pa.Table.from_pandas(df, preserve_index=False)
    with emu.client(f"owner:{org}") as c:
        c.create_key(key_id, DEV_POLICY)
        key = c.owner_key(key_id)
        owner.encrypt(
            table.schema,
            iter(table.to_batches()),
            open_storage(uri),
            uri,
            LocalMasterKey(key_id, key),
            ControlPlaneRegistry(c, uri, key_id),
            rows_per_file=rows_per_file,
        )
    return key


@pytest.fixture(scope="module")
def world_shm() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jobruntime-e2e-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def world(
    emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory, world_shm: Path
) -> World:
    tmp = tmp_path_factory.mktemp("e2e")
    a, b = customers(seed=11, size=600, shared=300)
    a.loc[0, "email"] = SENTINEL
    tag = secrets.token_hex(3)
    inputs, keys = {}, {}
    for name, df, org in (("customers_a", a, "org-a"), ("customers_b", b, "org-b")):
        uri = f"file://{tmp / name}"
        keys[f"{org}/{name}-{tag}"] = encrypt(emulator, df, uri, f"{org}/{name}-{tag}")
        inputs[name] = uri
    return World(emulator, tmp, a, b, inputs, keys, world_shm)


def run(plan: SubmitPlan) -> SubmitResult:
    return submit(plan, lambda _line: None)


def driver_refusal(result: SubmitResult) -> str:
    """The driver's one-line refusal, from its log."""
    assert result.driver_log is not None, "the run left no driver log"
    return driver_reason(result.driver_log)


OVERLAP_LINES: list[str] = []
"""What ``submit`` reported during the overlap run: steps, job-log lines, Spark progress."""


@pytest.fixture(scope="module")
def overlap_run(world: World) -> SubmitResult:
    # Several tests check their facts on this one run. A 2 s heartbeat interval: a run
    # times out after 3 missed beats (6 s), which a loaded machine does not reach.
    plan = world.plan(ROOT / "jobs" / "overlap.py", "overlap", heartbeat_interval=2.0)
    return submit(plan, OVERLAP_LINES.append)


def test_submit_streams_the_job_log_and_spark_progress(overlap_run: SubmitResult) -> None:
    assert overlap_run.exit_code == 0
    job = [line for line in OVERLAP_LINES if line.startswith("job overlap: ")]
    assert job[0] == "job overlap: job_started"
    assert job[-1] == "job overlap: job_finished"
    assert any(line.startswith("Spark UI at http://") for line in OVERLAP_LINES)
    progress = [line for line in OVERLAP_LINES if line.startswith("spark: jobs ")]
    assert progress, OVERLAP_LINES
    assert any(line.startswith("jobruntime: wrote overlap version ") for line in OVERLAP_LINES)


def test_overlap_on_local2_equals_pandas(world: World, overlap_run: SubmitResult) -> None:
    assert overlap_run.exit_code == 0, driver_refusal(overlap_run)
    table = world.decrypt(overlap_run.outputs["overlap"], "org-a/overlap")
    got = {r["segment"]: r["customers"] for r in table.to_pylist()}
    assert got == expected_overlap(world.a, world.b, k=10)
    with world.emu.client("operator") as c:
        status = c.status(overlap_run.run_id)
    assert status.state is RunState.SUCCEEDED
    assert [o.dataset for o in status.outputs] == ["overlap"]
    # HOST_DATA bound, one key agent, one release per dataset per pod.
    attested = audit(world, overlap_run.run_id, "run.attested")
    assert {(a["purpose"], a["role"]) for a in attested} == {
        ("verifier", "driver"),
        ("key-agent", "driver"),
        ("heartbeat", "driver"),
    }
    assert len({a["host_data"] for a in attested}) == 1
    assert attested[0]["host_data"] != "00" * 32
    released = [(r["pod"], r["dataset"]) for r in audit(world, overlap_run.run_id, "kms.released")]
    assert sorted(released) == sorted(set(released))
    assert {d for _, d in released} == {"customers_a", "customers_b", "overlap"}


def test_no_plaintext_or_key_bytes_in_anything_the_run_wrote(
    world: World, overlap_run: SubmitResult
) -> None:
    assert overlap_run.exit_code == 0
    keys = list(world.keys.values())
    needles = [SENTINEL.encode()] + [
        form for k in keys for form in (k, k.hex().encode(), base64.b64encode(k))
    ]
    scanned = 0
    places = [
        world.tmp / "overlap",
        world.emu.state / "runs",
        world.tmp / "spark-local",
        world.shm,
    ]
    for place in places:
        for f in [place] if place.is_file() else place.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                scanned += 1
                for needle in needles:
                    assert needle not in data, f"{f} holds a sentinel or key"
    assert scanned >= 3
    assert not list(world.shm.iterdir())  # the pod's memory volume is removed


def job_file(world: World, body: str) -> Path:
    path = world.tmp / f"job_{secrets.token_hex(3)}.py"
    path.write_text(body)
    return path


def test_reading_an_undeclared_dataset_fails_before_io(world: World) -> None:
    module = job_file(world, "def run(ctx):\n    ctx.read('payroll')\n")
    result = run(world.plan(module, "undeclared"))
    assert result.exit_code == 26
    assert "job.undeclared_dataset" in driver_refusal(result)
    with world.emu.client("operator") as c:
        status = c.status(result.run_id)
    assert status.state is RunState.FAILED
    assert status.outcome_reason == "job.undeclared_dataset"


def test_module_edited_after_approval_is_refused(world: World) -> None:
    module = job_file(world, (ROOT / "jobs" / "overlap.py").read_text())
    plan = world.plan(module, "edited")

    def edit(line: str) -> None:
        if line.startswith("job-verifier"):
            module.write_text(module.read_text() + "\n# changed after approval\n")

    with pytest.raises(JobRuntimeError) as info:
        submit(plan, edit)
    assert "digest.module" in info.value.message


def test_module_edited_after_verification_is_caught_by_the_driver(world: World) -> None:
    module = job_file(world, (ROOT / "jobs" / "overlap.py").read_text())

    def edit(line: str) -> None:
        if line.startswith("spark-submit"):
            module.write_text(module.read_text() + "\n# changed after verification\n")

    result = submit(world.plan(module, "edited-late"), edit)
    assert result.exit_code == 16
    assert "digest.module" in driver_refusal(result)
    # The driver's refusal is its outcome: the sidecar's final heartbeat ends the run now,
    # with the code, not a heartbeat timeout later.
    with world.emu.client("operator") as c:
        status = c.status(result.run_id)
    assert (status.state, status.outcome_reason) == (RunState.FAILED, "digest.module")


def test_an_owner_who_has_not_approved_stops_the_verifier(world: World, shm_dir: Path) -> None:
    from jobruntime.dev import pods
    from jobruntime.dev.submit import prepare
    from jobruntime.signing.approvals import sign_approval
    from jobruntime.signing.keys import SigningKey
    from jobruntime.spec.models import utcnow
    from tests.conftest import Runs

    plan = world.plan(ROOT / "jobs" / "overlap.py", "unapproved")
    local = prepare(plan, world.emu, shm_dir, lambda _: None)
    verified = Runs(world.emu, world.tmp).signed(local.run_id)
    key = SigningKey.load(world.emu.owner_key("org-a"))  # org-b never approves
    with world.emu.client("owner:org-a") as c:
        c.approve(
            local.run_id, sign_approval(verified.spec, verified.digest, "org-a", key, utcnow())
        )
    with pytest.raises(JobRuntimeError) as info:
        pods.run_verifier(local.driver, local.pod_plan, "driver")
    assert "approval.threshold" in info.value.message
    assert not local.pod_plan.bundle_dir("driver").exists()


def test_emulator_restarted_mid_run_completes_and_keeps_state(world: World, tmp_path: Path) -> None:
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        tag = secrets.token_hex(3)
        inputs = {}
        for name, df, org in (("customers_a", world.a, "org-a"), ("customers_b", world.b, "org-b")):
            uri = f"file://{tmp_path / name}"
            encrypt(emu, df, uri, f"{org}/{name}-{tag}")
            inputs[name] = uri
        plan = SubmitPlan(
            module=ROOT / "jobs" / "overlap.py",
            inputs=inputs,
            outputs={"overlap": f"file://{tmp_path / 'overlap'}"},
            params={"k": 10},
            state=emu.state,
        )

        def restart_later(line: str) -> None:
            if line.startswith("spark-submit"):

                def bounce() -> None:
                    time.sleep(3)
                    emu.restart()

                threading.Thread(target=bounce, daemon=True).start()

        result = submit(plan, restart_later)
        with emu.client("operator") as c:
            status = c.status(result.run_id)
        assert status.state in (RunState.SUCCEEDED, RunState.FAILED)
        if result.exit_code == 0:
            assert status.state is RunState.SUCCEEDED
        else:
            assert result.exit_code in (20, 24, 26)
    finally:
        emu.stop()


def test_overlap_on_the_standalone_cluster_equals_pandas(
    world: World, standalone: tuple[Any, Any]
) -> None:
    """Executors in their own JVMs under two workers get their keys through the key agent."""
    cluster, info = standalone
    plan = world.plan(
        ROOT / "jobs" / "overlap.py",
        "overlap-standalone",
        master=info.master_url,
        cluster_state=cluster.state_dir,
    )
    result = run(plan)
    assert result.exit_code == 0, driver_refusal(result)
    table = world.decrypt(result.outputs["overlap"], "org-a/overlap")
    got = {r["segment"]: r["customers"] for r in table.to_pylist()}
    assert got == expected_overlap(world.a, world.b, k=10)


def audit(world: World, run_id: str, event: str) -> list[dict[str, Any]]:
    with world.emu.client("operator") as c:
        return [e.details for e in c.audit().entries if e.run_id == run_id and e.event == event]


def test_heartbeats_report_progress_while_spark_runs(
    world: World, overlap_run: SubmitResult
) -> None:
    assert overlap_run.exit_code == 0, driver_refusal(overlap_run)
    beats = audit(world, overlap_run.run_id, "heartbeat")
    seqs = [int(b["seq"]) for b in beats]
    assert seqs == sorted(seqs)
    assert len(beats) >= 3
    done = [int(b["jobs_done"]) for b in beats]
    assert done == sorted(done)  # progress only advances
    # Spark's jobs were seen (on a loaded machine a 2 s read of Spark's REST API can miss
    # every completion of this short run; the count itself must never go back).
    assert max(int(b["jobs_total"]) for b in beats) > 0


SLOW_JOB = """
import time

def run(ctx):
    from pyspark.sql import functions as F

    @F.udf("string")
    def slowly(email):
        time.sleep(0.5)  # long enough that the cancel always lands first
        return email

    # Counting the UDF's column makes Spark run it (a bare count() would prune it).
    rows = ctx.read("customers_a").agg(F.count(slowly("email"))).collect()[0][0]
    ctx.log.info("counted", rows=rows)
"""


def test_ctrl_c_cancels_the_run_and_stops_its_spark_job(world: World) -> None:
    """SIGINT to ``submit`` (a terminal's Ctrl-C) cancels the run at the control plane; the
    order reaches the driver through the heartbeat sidecar and the pod volume."""
    module = job_file(world, SLOW_JOB)
    plan = world.plan(module, "cancelled", heartbeat_interval=3.0)  # no timeout under load
    interrupted = threading.Event()

    def cancel_soon(line: str) -> None:
        # Spark reports a job: the driver is up, watching for orders, and the slow stage runs.
        if line.startswith("spark: jobs ") and not interrupted.is_set():
            interrupted.set()
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as in a terminal

    started = time.monotonic()
    result = submit(plan, cancel_soon)
    assert result.exit_code == 29, driver_refusal(result)
    assert time.monotonic() - started < 120  # well before the job's own end (~150 s)
    with world.emu.client("operator") as c:
        status = c.status(result.run_id)
    assert status.state is RunState.CANCELLED
    assert status.cancel_reason == "cancelled with Ctrl-C by the submitter"
    assert not (world.tmp / "cancelled").exists()  # nothing published, nothing staged left


CAST_JOB = """
def run(ctx):
    from pyspark.sql import functions as F

    df = ctx.read("customers_a")
    n = df.select(F.col("email").cast("int").alias("x")).agg(F.sum("x")).collect()
    ctx.log.info("summed", rows=len(n))
"""


def test_a_cast_failing_on_a_value_leaves_it_in_no_log_message_or_file(world: World) -> None:
    """Spark's cast error quotes the value (the sentinel email): it must reach nothing."""
    module = job_file(world, CAST_JOB)
    lines: list[str] = []
    result = submit(world.plan(module, "cast-fails"), lines.append)
    assert result.exit_code == 26
    reason = driver_refusal(result)
    assert "job.failed" in reason and f"{module.name}:6" in reason, reason
    with world.emu.client("operator") as c:
        status = c.status(result.run_id)
        log = c.audit().model_dump_json()
    assert status.state is RunState.FAILED
    assert status.outcome_reason is not None and "job.failed" in status.outcome_reason
    needle = SENTINEL.encode()
    assert needle not in status.model_dump_json().encode()
    assert needle not in log.encode()
    assert not any(SENTINEL in ln for ln in lines)  # the terminal
    scanned = 0
    for place in (world.emu.state / "runs", world.tmp / "spark-local", world.shm):
        for f in place.rglob("*"):
            if f.is_file():
                scanned += 1
                assert needle not in f.read_bytes(), f"{f} holds the value"
    assert scanned >= 2


FLAKY_WRITE_JOB = """
def run(ctx):
    from pyspark import TaskContext
    from pyspark.sql import functions as F

    @F.udf("string")
    def flaky(email):
        tc = TaskContext.get()
        if tc.partitionId() == 1 and tc.attemptNumber() == 0:
            raise RuntimeError("the first attempt of partition 1 dies")
        return email

    df = ctx.read("customers_a").repartition(3).withColumn("email", flaky("email"))
    ctx.write(df, "overlap")
"""


def test_a_task_retried_during_a_native_write_publishes_one_complete_version(
    world: World,
) -> None:
    """Spark retries the failed write task (``local[2,2]``: 2 attempts); the retry's parts
    are the ones committed, once: every row exactly once, one version, staging gone."""
    module = job_file(world, FLAKY_WRITE_JOB)
    result = run(world.plan(module, "retried", master="local[2,2]"))
    assert result.exit_code == 0, driver_refusal(result)
    assert result.driver_log is not None
    log = result.driver_log.read_text()
    assert "native_parquet_unavailable" not in log  # the native path wrote it
    table = world.decrypt(result.outputs["overlap"], "org-a/overlap")
    assert sorted(table.column("email").to_pylist()) == sorted(world.a["email"])
    target = world.tmp / "retried"
    assert [p.name for p in (target / "_manifests").iterdir()] == ["v000001.json"]
    (version,) = [p for p in target.iterdir() if p.name.startswith("v")]
    assert len(list(version.iterdir())) == 3  # one part per partition, the retry's
    staging = target / "_staging"
    assert not staging.exists() or not any(staging.rglob("*.parquet"))
