"""Heartbeats: the control plane's rules, and the sidecar as a real process.

The sidecar attests with the emulated TEE and signs with the key bound into that
evidence; a "driver" here is a plain process that writes the files a real
driver writes (its pid, its outcome). tests/test_e2e.py runs it beside Spark.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from heartbeat.cli import command
from jobruntime.attestation.providers.choose import provider_for
from jobruntime.controlplane.api import (
    Heartbeat,
    OutputReport,
    Progress,
    Purpose,
    RunState,
    SignedHeartbeat,
)
from jobruntime.controlplane.service.heartbeats import expire
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.errors import JobRuntimeError
from jobruntime.job.handoff import CANCEL_ORDER
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import PodIdentity
from jobruntime.keyrelease.session import AttestedSession, new_pod_id
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from jobruntime.verification.bundle import load_bundle
from tests.conftest import Runs
from tests.driver_standin import DriverStandIn, wait_for
from tests.sessions import api, error_code
from verifier.run import verify_run


def claimed(runs: Runs) -> tuple[str, Path]:
    run_id = runs.approved()
    return run_id, verify_run(runs.config(run_id)).parent


def pod_of(runs: Runs, bundle: Path) -> PodIdentity:
    return load_bundle(bundle, TrustRoot.load(runs.emu.trust_root), now=utcnow()).identity


def session(
    runs: Runs, bundle: Path, purpose: Purpose = "heartbeat", pod: PodIdentity | None = None
) -> AttestedSession:
    """The claiming pod's session of ``purpose`` (its heartbeat sidecar's by default)."""
    provider = provider_for("emulated", runs.emu.state / "tee")
    pod = pod or pod_of(runs, bundle)
    s = AttestedSession(runs.emu.client("verifier"), pod, provider, purpose=purpose)
    s.attest()
    return s


def beat(run_id: str, seq: int, **kw: Any) -> Heartbeat:
    return Heartbeat(**{"run_id": run_id, "seq": seq, "at": utcnow(), "state": "running", **kw})


def send(runs: Runs, s: AttestedSession, b: Heartbeat, key: jwe.EphemeralKey | None = None) -> Any:
    signed = jwe.sign(key, canonical(b)) if key else s.sign(canonical(b))
    with runs.emu.client("verifier") as c:
        return c.heartbeat(b.run_id, SignedHeartbeat(session=s.token, jws=signed))


def refused(runs: Runs, s: AttestedSession, b: Heartbeat, code: str, **kw: Any) -> None:
    with pytest.raises(JobRuntimeError) as info:
        send(runs, s, b, **kw)
    assert getattr(info.value, "remote_code", None) == code, info.value.one_line()


def test_heartbeats_in_order_are_recorded_with_progress(runs: Runs) -> None:
    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
    for seq in range(3):
        assert send(runs, s, beat(run_id, seq, progress=Progress(tasks_done=seq))).accepted
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
    assert status.progress is not None
    assert status.progress.tasks_done == 2


def test_a_replayed_heartbeat_is_refused(runs: Runs) -> None:
    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
    send(runs, s, beat(run_id, 5))
    refused(runs, s, beat(run_id, 5), "heartbeat.replayed")
    refused(runs, s, beat(run_id, 4), "heartbeat.replayed")


def test_a_heartbeat_not_signed_by_the_attested_key_is_refused(runs: Runs) -> None:
    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
    refused(runs, s, beat(run_id, 0), "heartbeat.forged", key=jwe.EphemeralKey())


def test_heartbeats_for_a_finished_run_are_refused(runs: Runs) -> None:
    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
    send(runs, s, beat(run_id, 0, state="failed", final=True, reason="job.failed: ValueError"))
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
    assert (status.state, status.outcome_reason) == ("failed", "job.failed: ValueError")
    refused(runs, s, beat(run_id, 1), "heartbeat.run_finished")


def test_a_final_success_names_the_recorded_output_versions(runs: Runs) -> None:
    """A success naming an output version the control plane never recorded ends failed."""
    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
    made_up = OutputReport(dataset="overlap", version=1, manifest_digest="sha256:" + "ab" * 32)
    send(runs, s, beat(run_id, 0, state="succeeded", final=True, outputs=[made_up]))
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
    assert status.state == "failed"
    assert status.outcome_reason is not None
    assert status.outcome_reason.startswith("run.output_mismatch")


def test_only_the_claiming_pods_heartbeat_session_speaks_for_the_run(runs: Runs) -> None:
    run_id, bundle = claimed(runs)
    mine = pod_of(runs, bundle)
    # Another pod (the same approved code, its own pod id) cannot open a heartbeat session.
    stranger = dataclasses.replace(mine, pod_id=new_pod_id())
    with pytest.raises(JobRuntimeError) as info:
        session(runs, bundle, pod=stranger)
    assert getattr(info.value, "remote_code", None) == "kms.pod_not_of_run"
    # The claiming pod's key-agent session is not a heartbeat session.
    agent = session(runs, bundle, purpose="key-agent")
    refused(runs, agent, beat(run_id, 0, state="succeeded", final=True), "heartbeat.session")
    # A second heartbeat session of the same pod is refused: one per pod and purpose.
    session(runs, bundle)
    with pytest.raises(JobRuntimeError) as again:
        session(runs, bundle)
    assert getattr(again.value, "remote_code", None) == "kms.session_exists"
    with runs.emu.client("operator") as c:
        assert c.status(run_id).state == "claimed"


def test_the_bearer_token_alone_cannot_end_a_run(runs: Runs) -> None:
    """No route takes an outcome from a token: only the final signed heartbeat does."""
    run_id, _ = claimed(runs)
    for path, body in (
        (f"/runs/{run_id}/complete", {"outcome": "succeeded", "outputs": []}),
        (f"/runs/{run_id}/heartbeats", {"session": "made-up", "jws": "a.b.c"}),
    ):
        resp = api(runs.emu, "verifier", "POST", path, body)
        assert resp.status_code in (403, 404, 405), resp.text
    assert error_code(resp) == "heartbeat.session"
    with runs.emu.client("operator") as c:
        assert c.status(run_id).state == "claimed"


def test_a_cancel_is_ordered_in_the_answer(runs: Runs) -> None:
    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
    assert not send(runs, s, beat(run_id, 0)).cancel
    with runs.emu.client("operator") as c:
        c.cancel(run_id, "owner withdrew")
    ack = send(runs, s, beat(run_id, 1))
    assert ack.cancel


def test_a_silent_run_fails_with_heartbeat_timeout(runs: Runs) -> None:
    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
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

    from jobruntime.emulator.context import load_control_plane

    run_id, bundle = claimed(runs)
    s = session(runs, bundle)
    send(runs, s, beat(run_id, 0, interval=1.0))
    cp = load_control_plane(runs.emu.state)
    try:
        later = utcnow() + timedelta(seconds=10)
        assert run_id not in expire(cp, later, since=later - timedelta(seconds=1))
        assert run_id in expire(cp, later)
    finally:
        cp.repo.close()


# --- the sidecar as a process ---------------------------------------------------------


def sidecar(
    emu: EmulatorProcess, bundle: Path, token: Path, interval: float
) -> subprocess.Popen[bytes]:
    argv = command(
        bundle,
        emu.url,
        token,
        emu.state / "tee",
        interval,
        trust_root=emu.trust_root,
        spark_ui="http://127.0.0.1:9",
    )
    env = {**os.environ, "JOBRUNTIME_DEV": "1"}
    return subprocess.Popen(argv, stderr=subprocess.DEVNULL, env=env)


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


def test_sigterm_after_the_driver_exits_still_sends_the_outcome(runs: Runs, pod: Any) -> None:
    """Found by the pod runner: a kubelet SIGTERMs sidecars as soon as the driver exits,
    usually before the next interval; the outcome must still reach the control plane."""
    run_id, bundle, token = pod
    proc = sidecar(runs.emu, bundle, token, 30.0)  # the next beat would be 30 s away
    try:
        deadline = time.monotonic() + 20
        while not heartbeats(runs.emu, run_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "failed"}))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    assert heartbeats(runs.emu, run_id)[-1]["final"] is True
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
    assert (status.state, status.outcome_reason) == (RunState.FAILED, "driver-failed")


def test_the_final_heartbeat_goes_out_when_the_driver_ends_not_an_interval_later(
    runs: Runs, pod: Any
) -> None:
    """The run ends as soon as the driver has: `submit` and a pod do not wait a tick."""
    run_id, bundle, token = pod
    proc = sidecar(runs.emu, bundle, token, 60.0)  # the next beat would be 60 s away
    try:
        assert wait_for(lambda: heartbeats(runs.emu, run_id), 60)
        (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "failed"}))
        written = time.monotonic()
        assert proc.wait(45) == 0  # by itself, after the final beat: well before 60 s
        assert time.monotonic() - written < 45
    finally:
        proc.kill()
    assert heartbeats(runs.emu, run_id)[-1]["final"] is True
    with runs.emu.client("operator") as c:
        assert c.status(run_id).state is RunState.FAILED


def test_as_a_native_sidecar_it_waits_to_be_stopped_after_the_final_word(
    runs: Runs, pod: Any
) -> None:
    """A native sidecar that exits while its pod runs is restarted by the kubelet."""
    run_id, bundle, token = pod
    env = {**os.environ, "JOBRUNTIME_DEV": "1", "JOB_HEARTBEAT_WAIT_FOR_STOP": "1"}
    argv = command(
        bundle, runs.emu.url, token, runs.emu.state / "tee", 0.3, trust_root=runs.emu.trust_root
    )
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL, env=env)
    try:
        (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "failed"}))
        with runs.emu.client("operator") as c:
            deadline = time.monotonic() + 20
            while c.status(run_id).state is RunState.CLAIMED and time.monotonic() < deadline:
                time.sleep(0.2)
            assert c.status(run_id).state is RunState.FAILED
        assert proc.poll() is None  # the final word is sent, and it is still there
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()


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
    driver = DriverStandIn(runs.emu, bundle, run_id)  # the driver's own watcher
    proc = sidecar(runs.emu, bundle, token, 0.5)
    try:
        assert wait_for(lambda: heartbeats(runs.emu, run_id), 20)
        with runs.emu.client("operator") as c:
            c.cancel(run_id, "stop it")
        started = time.monotonic()
        assert driver.cancelled.wait(15)
        assert time.monotonic() - started < 0.5 + 0.5 + 5.0  # two ticks, plus slack for load
    finally:
        driver.watch.stop()
        proc.kill()


OUTAGE = 10.0


def test_control_plane_outage_keeps_a_backlog_that_arrives_later(tmp_path: Path) -> None:
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        runs = Runs(emu, tmp_path)
        run_id, bundle = claimed(runs)
        token = tmp_path / "token"
        token.write_text(emu.token("verifier"))
        proc = sidecar(emu, bundle, token, 0.3)
        try:
            assert wait_for(lambda: heartbeats(emu, run_id), 20)
            before = len(heartbeats(emu, run_id))
            emu.stop()
            time.sleep(OUTAGE)  # the control plane is down: the experiment itself
            assert proc.poll() is None  # it neither crashed nor gave up
            emu.start()
            # The backlog of the outage arrives: heartbeats made while it was down.
            assert wait_for(lambda: len(heartbeats(emu, run_id)) >= before + 5, 30)
        finally:
            (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "succeeded"}))
            proc.wait(30)
        seqs = [d["seq"] for d in heartbeats(emu, run_id)]
        print(f"heartbeats: {before} before a {OUTAGE:.0f} s outage, {len(seqs)} in all")
        assert seqs == list(range(len(seqs)))  # none lost, in order, across the outage
        with emu.client("operator") as c:
            # The run was not lost: the final heartbeat after the outage ended it.
            assert c.status(run_id).state is RunState.SUCCEEDED
    finally:
        emu.stop()


class FlippingProxy:
    """A hostile hop between the sidecar and the control plane: every heartbeat answer
    comes back as an unsigned cancel (the attack that once stopped a driver)."""

    def __init__(self, upstream: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                resp = requests.post(
                    upstream + self.path,
                    data=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                    timeout=10,
                )
                data = resp.content
                if self.path.endswith("/heartbeats") and resp.ok:
                    answer = json.loads(data) | {"cancel": True, "reason": "forged"}
                    data = json.dumps(answer).encode()
                    outer.flipped += 1
                self.send_response(resp.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.flipped = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_unsigned_cancel_from_the_network_stops_nothing(runs: Runs, pod: Any) -> None:
    run_id, bundle, token = pod
    driver = DriverStandIn(runs.emu, bundle, run_id)
    proxy = FlippingProxy(runs.emu.url)
    argv = command(
        bundle, proxy.url, token, runs.emu.state / "tee", 0.3, trust_root=runs.emu.trust_root
    )
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, env={**os.environ, "JOBRUNTIME_DEV": "1"}, text=True
    )
    try:
        deadline = time.monotonic() + 120  # generous: attesting is slow on a loaded machine
        while proxy.flipped < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.flipped >= 3
        assert not driver.cancelled.is_set()  # the forged cancels were ignored
        assert not (bundle / CANCEL_ORDER).exists()  # and never handed to the driver
        # A real cancel (signed by the control plane) still gets through the same proxy.
        with runs.emu.client("operator") as c:
            c.cancel(run_id, "stop it")
        assert driver.cancelled.wait(15)
    finally:
        driver.watch.stop()
        proc.kill()
        _, err = proc.communicate(timeout=10)
        proxy.close()
    assert "ignored a cancel: order.unverified" in err
