"""An executor JVM is SIGKILLed mid-job on a standalone cluster: Spark reschedules its
tasks (and recomputes its lost shuffle output), the write's commit takes one attempt per
partition, and exactly one complete, correct version is published.

``tests/test_e2e.py`` covers a task attempt that raises (local mode); here the whole
executor process dies, as on a node loss or an OOM kill, in the middle of the write stage.
"""

from __future__ import annotations

import os
import signal

import pytest

from jobruntime.dev import procs
from jobruntime.dev.cluster.info import ClusterInfo
from jobruntime.dev.cluster.standalone import StandaloneCluster
from jobruntime.dev.submit import driver_reason, submit
from tests.faults.support import Injector, files_under, wait_for
from tests.test_e2e import World, job_file

pytestmark = pytest.mark.slow

EXECUTOR = "CoarseGrainedExecutorBackend"

SLOW_WRITE_JOB = """
import time

def run(ctx):
    from pyspark.sql import functions as F

    @F.udf("string")
    def slow(email):
        time.sleep(0.06)  # 150 rows a partition: about 9 s a task, two rounds on 2 cores
        return email

    df = ctx.read("customers_a").repartition(4).withColumn("email", slow("email"))
    ctx.write(df, "overlap")
"""


def executors_of(worker_pgid: int) -> list[int]:
    """The executor JVMs a Worker started: they are in its process group."""
    return [
        pid
        for pid in procs.group_members(worker_pgid)
        if any(EXECUTOR in a for a in procs.cmdline(pid) or [])
    ]


def test_an_executor_killed_mid_write_is_retried_and_one_complete_version_published(
    world: World, standalone: tuple[StandaloneCluster, ClusterInfo]
) -> None:
    cluster, info = standalone
    worker = info.pids["worker-0"]
    target = world.tmp / "killed-executor"
    plan = world.plan(
        job_file(world, SLOW_WRITE_JOB),
        target.name,
        master=info.master_url,
        cluster_state=cluster.state_dir,
    )
    killed: list[int] = []
    replacements: list[int] = []

    def kill_executor() -> None:
        (pid,) = executors_of(worker)
        killed.append(pid)
        os.kill(pid, signal.SIGKILL)
        # The master has the Worker start a new executor for the application.
        fresh = wait_for(lambda: [p for p in executors_of(worker) if p != pid], 120, "new executor")
        replacements.extend(fresh)

    # Mid-write: a write task has staged its file, and worker-0 runs an executor.
    def writing() -> bool:
        return bool(files_under(target / "_staging", ".parquet")) and bool(executors_of(worker))

    injector = Injector(writing, kill_executor, timeout=300)

    def on_line(line: str) -> None:
        if line.startswith("spark-submit"):
            injector.start()

    result = submit(plan, on_line)
    injector.check()
    assert result.exit_code == 0, driver_reason(result.driver_log)  # type: ignore[arg-type]
    assert procs.cmdline(killed[0]) is None  # it really died
    assert replacements, "no executor replaced the killed one while the job ran"

    # Every row exactly once, in one version of one part per partition; nothing staged left.
    table = world.decrypt(result.outputs["overlap"], "org-a/overlap")
    assert sorted(table.column("email").to_pylist()) == sorted(world.a["email"])
    assert [p.name for p in (target / "_manifests").iterdir()] == ["v000001.json"]
    (version,) = [p for p in target.iterdir() if p.name.startswith("v")]
    assert len(list(version.iterdir())) == 4
    assert not files_under(target / "_staging")
    with world.emu.client("operator") as c:
        status = c.status(result.run_id)
    assert [(o.dataset, o.version) for o in status.outputs] == [("overlap", 1)]
