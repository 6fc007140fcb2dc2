"""The control plane (the emulator) restarts while a Spark job runs: the pod's sidecars
ride it out and the run completes, its output whole, its audit chain intact.

``tests/test_e2e.py`` restarts the emulator on a timer and accepts either outcome; here
the restart lands on an event (Spark reports the slow stage running), the outcome is
exact (succeeded), and the audit log after the restart must verify and extend the
checkpoint saved before the run.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from jobruntime.controlplane.api import RunState
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.dev.submit import driver_reason, submit
from tests.faults.support import Injector
from tests.test_audit import cli
from tests.test_e2e import World, encrypt, job_file

pytestmark = pytest.mark.slow

SLOW_WRITE_JOB = """
import time

def run(ctx):
    from pyspark.sql import functions as F

    @F.udf("string")
    def slow(email):
        time.sleep(0.03)  # 600 rows on 2 cores: about 9 s, longer than a restart
        return email

    ctx.write(ctx.read("customers_a").withColumn("email", slow("email")), "overlap")
"""


def test_an_emulator_restarted_mid_run_completes_the_run_with_its_audit_chain_intact(
    world: World, tmp_path: Path
) -> None:
    emu = EmulatorProcess(tmp_path / "emu").start()  # its own: the session's is shared
    try:
        local = World(emu, tmp_path, world.a, world.b, {}, {}, world.shm)
        tag = secrets.token_hex(3)
        for name, df, org in (("customers_a", world.a, "org-a"), ("customers_b", world.b, "org-b")):
            uri = f"file://{tmp_path / name}"
            local.keys[f"{org}/{name}-{tag}"] = encrypt(emu, df, uri, f"{org}/{name}-{tag}")
            local.inputs[name] = uri
        checkpoint = tmp_path / "checkpoint.json"
        verify = ["audit", "verify", "--trust-root", str(emu.trust_root)]
        verify += ["--emulator-state", str(emu.state)]
        saved = cli(*verify, "--save-checkpoint", str(checkpoint))
        assert saved.returncode == 0, saved.stderr

        plan = local.plan(job_file(local, SLOW_WRITE_JOB), "overlap", heartbeat_interval=3.0)
        running: list[str] = []
        injector = Injector(lambda: running, emu.restart, timeout=240)

        def on_line(line: str) -> None:
            if line.startswith("spark: jobs "):
                running.append(line)
                injector.start()

        result = submit(plan, on_line)
        injector.check()
        assert result.exit_code == 0, driver_reason(result.driver_log)  # type: ignore[arg-type]
        with emu.client("operator") as c:
            status = c.status(result.run_id)
            log = [e for e in c.audit().entries if e.run_id == result.run_id]
        assert status.state is RunState.SUCCEEDED
        assert [(o.dataset, o.version) for o in status.outputs] == [("overlap", 1)]
        # Nothing lost across the restart: the steps before it and after it are all logged.
        events = [e.event for e in log]
        for event in ("run.claimed", "kms.released", "heartbeat", "run.succeeded"):
            assert event in events, events
        seqs = [int(str(e.details["seq"])) for e in log if e.event == "heartbeat"]
        assert seqs == sorted(set(seqs))
        # The output is whole and is the only version.
        table = local.decrypt(result.outputs["overlap"], "org-a/overlap")
        assert sorted(table.column("email").to_pylist()) == sorted(world.a["email"])
        assert [p.name for p in (tmp_path / "overlap" / "_manifests").iterdir()] == ["v000001.json"]
        # The audit chain still verifies, and extends what was verified before the restart.
        after = cli(*verify, "--checkpoint", str(checkpoint))
        assert after.returncode == 0, after.stderr
        assert "extends the saved checkpoint" in after.stdout
    finally:
        emu.stop()
