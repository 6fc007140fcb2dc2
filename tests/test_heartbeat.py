"""Heartbeats: the control plane's rules, and the sidecar as a real process.

The sidecar attests with the emulated TEE and signs with the key bound into that
evidence; a "driver" here is a plain process that writes the files a real
driver writes (its pid, its outcome). tests/test_e2e.py runs it beside Spark.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from heartbeat.cli import command
from jobruntime.attestation.providers.choose import provider_for
from jobruntime.controlplane.api import Heartbeat, Progress, RunState, SignedHeartbeat
from jobruntime.emulator.heartbeats import expire
from jobruntime.emulator.process import EmulatorProcess
from jobruntime.errors import JobRuntimeError
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.session import AttestedSession
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from tests.conftest import Runs
from verifier.run import verify_run


def claimed(runs: Runs) -> tuple[str, Path]:
    run_id = runs.approved()
    return run_id, verify_run(runs.config(run_id)).parent


def session(runs: Runs, run_id: str) -> AttestedSession:
    provider = provider_for("emulated", runs.emu.state / "tee")
    s = AttestedSession(runs.emu.client("verifier"), run_id, provider, purpose="heartbeat")
    s.attest()
    return s


def beat(run_id: str, seq: int, **kw: Any) -> Heartbeat:
    return Heartbeat(run_id=run_id, seq=seq, at=utcnow(), state="running", **kw)


def send(runs: Runs, s: AttestedSession, b: Heartbeat, key: jwe.EphemeralKey | None = None) -> Any:
    signed = jwe.sign(key, canonical(b)) if key else s.sign(canonical(b))
    with runs.emu.client("verifier") as c:
        return c.heartbeat(b.run_id, SignedHeartbeat(session=s.token, jws=signed))


def refused(runs: Runs, s: AttestedSession, b: Heartbeat, code: str, **kw: Any) -> None:
    with pytest.raises(JobRuntimeError) as info:
        send(runs, s, b, **kw)
    assert getattr(info.value, "remote_code", None) == code, info.value.one_line()


def test_heartbeats_in_order_are_recorded_with_progress(runs: Runs) -> None:
    run_id, _ = claimed(runs)
    s = session(runs, run_id)
    for seq in range(3):
        assert send(runs, s, beat(run_id, seq, progress=Progress(tasks_done=seq))).accepted
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
    assert status.progress is not None
    assert status.progress.tasks_done == 2


def test_a_replayed_heartbeat_is_refused(runs: Runs) -> None:
    run_id, _ = claimed(runs)
    s = session(runs, run_id)
    send(runs, s, beat(run_id, 5))
    refused(runs, s, beat(run_id, 5), "heartbeat.replayed")
    refused(runs, s, beat(run_id, 4), "heartbeat.replayed")


def test_a_heartbeat_not_signed_by_the_attested_key_is_refused(runs: Runs) -> None:
    run_id, _ = claimed(runs)
    s = session(runs, run_id)
    refused(runs, s, beat(run_id, 0), "heartbeat.forged", key=jwe.EphemeralKey())


def test_heartbeats_for_a_finished_run_are_refused(runs: Runs) -> None:
    from jobruntime.controlplane.api import CompleteRequest

    run_id, _ = claimed(runs)
    s = session(runs, run_id)
    with runs.emu.client("verifier") as c:
        c.complete(run_id, CompleteRequest(outcome="succeeded"))
    refused(runs, s, beat(run_id, 0), "heartbeat.run_finished")


def test_a_cancel_is_ordered_in_the_answer(runs: Runs) -> None:
    run_id, _ = claimed(runs)
    s = session(runs, run_id)
    assert not send(runs, s, beat(run_id, 0)).cancel
    with runs.emu.client("operator") as c:
        c.cancel(run_id, "owner withdrew")
    ack = send(runs, s, beat(run_id, 1))
    assert ack.cancel


def test_a_silent_run_fails_with_heartbeat_timeout(runs: Runs) -> None:
    run_id, _ = claimed(runs)
    s = session(runs, run_id)
    send(runs, s, beat(run_id, 0, interval=0.2))
    deadline = time.monotonic() + 10
    with runs.emu.client("operator") as c:
        while c.status(run_id).state is RunState.CLAIMED and time.monotonic() < deadline:
            time.sleep(0.2)
        status = c.status(run_id)
    assert status.state is RunState.FAILED
    assert status.outcome_reason == "heartbeat-timeout"


def test_the_control_planes_own_downtime_is_not_silence(runs: Runs) -> None:
    from datetime import timedelta

    from jobruntime.emulator.context import Context

    run_id, _ = claimed(runs)
    s = session(runs, run_id)
    send(runs, s, beat(run_id, 0, interval=1.0))
    ctx = Context.load(runs.emu.state)
    try:
        later = utcnow() + timedelta(seconds=10)
        assert run_id not in expire(ctx, later, since=later - timedelta(seconds=1))
        assert run_id in expire(ctx, later)
    finally:
        ctx.store.close()


# --- the sidecar as a process ---------------------------------------------------------


def sidecar(
    emu: EmulatorProcess, bundle: Path, token: Path, interval: float
) -> subprocess.Popen[bytes]:
    argv = command(
        bundle, emu.url, token, emu.state / "tee", interval, spark_ui="http://127.0.0.1:9"
    )
    return subprocess.Popen(argv, stderr=subprocess.PIPE)


def heartbeats(emu: EmulatorProcess, run_id: str) -> list[dict[str, Any]]:
    with emu.client("operator", retry_for=10) as c:
        return [
            e.details for e in c.audit().entries if e.run_id == run_id and e.event == "heartbeat"
        ]


@pytest.fixture
def pod(runs: Runs, tmp_path: Path) -> tuple[str, Path, Path]:
    run_id, bundle = claimed(runs)
    token = tmp_path / "token"
    token.write_text(runs.emu.token("verifier"))
    return run_id, bundle, token


def test_sidecar_reports_then_sends_the_final_outcome(runs: Runs, pod: Any) -> None:
    run_id, bundle, token = pod
    proc = sidecar(runs.emu, bundle, token, 0.3)
    try:
        time.sleep(2.0)
        (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "failed"}))
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    seen = heartbeats(runs.emu, run_id)
    seqs = [d["seq"] for d in seen]
    assert seqs == sorted(seqs)
    assert len(seqs) >= 3
    assert seen[-1]["final"] is True
    with runs.emu.client("operator") as c:
        assert c.status(run_id).outcome_reason == "driver-failed"


def test_killing_the_sidecar_fails_the_run_within_timeout_plus_interval(
    runs: Runs, pod: Any
) -> None:
    run_id, bundle, token = pod
    interval = 0.5
    proc = sidecar(runs.emu, bundle, token, interval)
    try:
        deadline = time.monotonic() + 20
        while not heartbeats(runs.emu, run_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        with runs.emu.client("operator") as c:
            while c.status(run_id).state is RunState.CLAIMED and time.monotonic() - killed < 10:
                time.sleep(0.1)
            status = c.status(run_id)
        assert status.outcome_reason == "heartbeat-timeout"
        assert time.monotonic() - killed <= 3 * interval + interval + 2.0  # + watcher tick, load
    finally:
        proc.kill()


def test_cancel_stops_the_driver_within_an_interval(runs: Runs, pod: Any) -> None:
    run_id, bundle, token = pod
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (bundle / "driver.pid").write_text(str(driver.pid))
    proc = sidecar(runs.emu, bundle, token, 0.5)
    try:
        time.sleep(1.0)
        with runs.emu.client("operator") as c:
            c.cancel(run_id, "stop it")
        started = time.monotonic()
        assert driver.wait(10) == -signal.SIGTERM
        assert time.monotonic() - started < 0.5 + 3.0  # one interval, plus slack for load
    finally:
        driver.kill()
        proc.kill()


def test_control_plane_outage_keeps_a_backlog_that_arrives_later(tmp_path: Path) -> None:
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        runs = Runs(emu, tmp_path)
        run_id, bundle = claimed(runs)
        token = tmp_path / "token"
        token.write_text(emu.token("verifier"))
        proc = sidecar(emu, bundle, token, 0.3)
        try:
            deadline = time.monotonic() + 20
            while not heartbeats(emu, run_id) and time.monotonic() < deadline:
                time.sleep(0.2)
            emu.stop()
            time.sleep(30.0)  # the control plane is down for 30 s
            assert proc.poll() is None  # it neither crashed nor gave up
            emu.start()
            time.sleep(3.0)
        finally:
            (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "succeeded"}))
            proc.wait(30)
        seqs = [d["seq"] for d in heartbeats(emu, run_id)]
        assert seqs == list(range(len(seqs)))  # none lost, in order, across the outage
        assert len(seqs) >= 30  # fewer during the outage: each failed send waits its deadline
        with emu.client("operator") as c:
            assert c.status(run_id).state is RunState.CLAIMED  # the run was not lost
    finally:
        emu.stop()
