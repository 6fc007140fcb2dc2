"""The driver pod's key agent is SIGKILLed while a job runs: the next key operation fails
with the agent's own code (``keyagent.unavailable``, exit 22) instead of hanging or
falling back, the run ends failed with that reason, and nothing plaintext, no key and
no half-written part is left on disk.

The kill lands in the job's first stage (a slow shuffle of the sentinel table, its
input key already released); the second stage's tasks then need the output dataset's
KEK wrapped by the agent, and it is gone.
"""

from __future__ import annotations

import pytest

from jobruntime.controlplane.api import RunState
from jobruntime.dev.submit import driver_reason, submit
from tests.faults.support import (
    Injector,
    assert_nothing_holds,
    files_under,
    group_leader_with,
    kill_group,
    needles,
)
from tests.test_e2e import SENTINEL, World, job_file

pytestmark = pytest.mark.slow

SHUFFLE_THEN_WRITE_JOB = """
import time

def run(ctx):
    from pyspark.sql import functions as F

    @F.udf("string")
    def slow(email):
        time.sleep(0.05)  # 600 rows on 2 cores: a first stage of about 15 s
        return email

    df = ctx.read("customers_a").withColumn("email", slow("email")).repartition(3)
    ctx.write(df, "overlap")
"""


def test_a_key_agent_killed_mid_run_fails_tasks_with_its_code_and_leaves_nothing(
    world: World,
) -> None:
    target = world.tmp / "killed-agent"
    plan = world.plan(job_file(world, SHUFFLE_THEN_WRITE_JOB), target.name)
    killed: list[int] = []

    def kill_agent() -> None:
        # Only this module's runs have their pod volume under world.shm.
        leader = group_leader_with(str(world.shm), "jobruntime.keyagent")
        assert leader is not None, "no key agent of this run is running"
        killed.append(leader)
        kill_group(leader)

    stage_running: list[str] = []
    injector = Injector(lambda: stage_running, kill_agent, timeout=240)
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line.startswith("spark: jobs "):  # Spark reports the first stage running
            stage_running.append(line)
            injector.start()

    result = submit(plan, on_line)
    injector.check()
    reason = driver_reason(result.driver_log)  # type: ignore[arg-type]
    assert result.exit_code == 22, reason
    assert "keyagent.unavailable" in reason, reason
    with world.emu.client("operator") as c:
        status = c.status(result.run_id)
    assert status.state is RunState.FAILED
    assert status.outcome_reason == "keyagent.unavailable"
    assert status.outputs == []

    # Nothing published, nothing staged left, no plaintext or key anywhere the run wrote.
    assert not files_under(target), [str(p) for p in files_under(target)]
    secrets = needles([SENTINEL], world.keys.values())
    places = [world.tmp / "spark-local", world.shm, world.emu.state / "runs", target]
    assert assert_nothing_holds(places, secrets) >= 2
    assert not list(world.shm.iterdir())  # the pod's memory volume is gone with the pod
    assert not any(SENTINEL in line for line in lines)
