"""The driver is SIGKILLed mid-write: nothing of the write becomes visible, the run ends
failed by the control plane's heartbeat timeout, and the next write cleans the staging.

``versions.commit`` publishes with one create-if-absent of the manifest; a driver killed
before that leaves only ``_staging/<write id>/``, which no reader ever looks at and which
the next successful write to the dataset removes.
"""

from __future__ import annotations

import os
import signal

import pytest

from jobruntime.controlplane.api import RunState
from jobruntime.dev.submit import driver_reason, submit
from tests.faults.support import Injector, files_under, group_leader_with, kill_group, wait_for
from tests.test_e2e import World, job_file, run

pytestmark = pytest.mark.slow

SLOW_WRITE_JOB = """
import time

def run(ctx):
    from pyspark import TaskContext
    from pyspark.sql import functions as F

    @F.udf("string")
    def slow(email):
        if TaskContext.get().partitionId() > 0:
            time.sleep(0.2)  # 150 rows: 30 s a partition, far longer than the kill takes
        return email

    df = ctx.read("customers_a").repartition(4).withColumn("email", slow("email"))
    ctx.write(df, "overlap")
"""

WRITE_JOB = """
def run(ctx):
    ctx.write(ctx.read("customers_a"), "overlap")
"""

HEARTBEAT = 3.0  # the run times out 3 intervals after the sidecar stops: ~25 s in all


def test_a_driver_killed_mid_write_publishes_nothing_and_the_next_write_cleans_up(
    world: World,
) -> None:
    target = world.tmp / "killed-driver"
    staging = target / "_staging"
    plan = world.plan(job_file(world, SLOW_WRITE_JOB), target.name, heartbeat_interval=HEARTBEAT)
    marker = plan.spark_conf["spark.local.dir"]  # only this run's driver has it in its argv
    killed: list[int] = []

    def kill_driver() -> None:
        leader = group_leader_with(marker)
        assert leader is not None, "no driver process carries this run's spark.local.dir"
        killed.append(leader)
        kill_group(leader)

    # Mid-write: at least one part is staged, and the slow partitions still run.
    injector = Injector(lambda: files_under(staging, ".parquet"), kill_driver, timeout=240)

    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line.startswith("spark-submit"):
            injector.start()

    result = submit(plan, on_line)
    injector.check()
    assert result.exit_code == -signal.SIGKILL
    assert not any(line.startswith("jobruntime: wrote overlap") for line in lines)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in killed)

    # Nothing visible: no manifest, no version directory; the parts are still staged.
    assert not (target / "_manifests").exists() or not any((target / "_manifests").iterdir())
    assert not [p for p in target.iterdir() if p.name.startswith("v")]
    stale = files_under(staging, ".parquet")
    assert stale, "the killed write staged nothing: the kill landed too early"

    # The control plane ends the silent run itself, with a reason, and names no output.
    def finished() -> RunState | None:
        with world.emu.client("operator") as c:
            status = c.status(result.run_id)
        return status.state if status.state is not RunState.CLAIMED else None

    assert wait_for(finished, 120, "end of the killed run") is RunState.FAILED
    with world.emu.client("operator") as c:
        status = c.status(result.run_id)
    assert status.outcome_reason == "heartbeat-timeout"
    assert status.outputs == []

    # The next write to the dataset publishes version 1 and removes the dead write's parts.
    again = run(world.plan(job_file(world, WRITE_JOB), target.name))
    assert again.exit_code == 0, driver_reason(again.driver_log)  # type: ignore[arg-type]
    assert [p.name for p in (target / "_manifests").iterdir()] == ["v000001.json"]
    assert not files_under(staging), [str(p) for p in files_under(staging)]
    table = world.decrypt(again.outputs["overlap"], "org-a/overlap")
    assert sorted(table.column("email").to_pylist()) == sorted(world.a["email"])
