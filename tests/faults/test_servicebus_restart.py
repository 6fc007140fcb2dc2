"""The Service Bus broker restarts while a run's heartbeats go over it: the sidecar and
the control plane's consumer reconnect, the driver's final word still arrives, and the
run ends succeeded with ordered heartbeats and an intact audit chain.

``tests/test_heartbeat_servicebus.py`` restarts the broker and checks that beats resume
and a cancel comes back; here the run is taken to its end across the restart: its
outcome (the one message that must not be lost) and the audit chain are checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobruntime.controlplane.api import RunState
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.emulator.app import SERVICEBUS_ENV
from jobruntime.job.handoff import DRIVER_OUTCOME, write_atomically
from tests.conftest import Runs
from tests.faults.support import wait_for
from tests.servicebus_broker import BrokerProcess
from tests.test_audit import cli
from tests.test_heartbeat_servicebus import beats, sidecar
from verifier.run import verify_run

pytestmark = pytest.mark.slow


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of this test's own: restarting the session's would disturb other tests."""
    with BrokerProcess(tmp_path / "broker") as broker:
        yield broker


def test_a_broker_restarted_mid_run_loses_no_outcome_and_keeps_the_audit_chain(
    bus: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVICEBUS_ENV, bus.connection_string)
    emu = EmulatorProcess(tmp_path / "emu").start()
    proc = None
    try:
        runs = Runs(emu, tmp_path)
        run_id = runs.approved()
        bundle = verify_run(runs.config(run_id)).parent
        token = tmp_path / "token"
        token.write_text(emu.token("verifier"))
        checkpoint = tmp_path / "checkpoint.json"
        verify = ["audit", "verify", "--trust-root", str(emu.trust_root)]
        verify += ["--emulator-state", str(emu.state)]
        saved = cli(*verify, "--save-checkpoint", str(checkpoint))
        assert saved.returncode == 0, saved.stderr

        proc = sidecar(emu, bundle, token, bus.connection_string)
        wait_for(lambda: len(beats(emu, run_id)) >= 2, 60, "heartbeats over the bus")
        before = len(beats(emu, run_id))
        bus.restart()  # same port: both ends hold the connection string
        wait_for(lambda: len(beats(emu, run_id)) >= before + 2, 90, "heartbeats after the restart")

        # The driver's last word, as the real driver leaves it: the sidecar signs and sends it.
        body: dict[str, object] = {"outcome": "succeeded", "reason": None, "outputs": []}
        write_atomically(bundle, DRIVER_OUTCOME, json.dumps(body))

        def ended() -> RunState | None:
            with emu.client("operator", retry_for=10) as c:
                state = c.status(run_id).state
            return state if state is not RunState.CLAIMED else None

        assert wait_for(ended, 90, "the final heartbeat") is RunState.SUCCEEDED
        assert proc.wait(60) == 0  # the sidecar exits on its own once the outcome is sent
        seqs = [int(b["seq"]) for b in beats(emu, run_id)]
        assert seqs == sorted(set(seqs)), seqs  # in order, none twice
        with emu.client("operator") as c:
            events = [e.event for e in c.audit().entries if e.run_id == run_id]
        assert events.count("run.succeeded") == 1
        after = cli(*verify, "--checkpoint", str(checkpoint))
        assert after.returncode == 0, after.stderr
        assert "extends the saved checkpoint" in after.stdout
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        emu.stop()
