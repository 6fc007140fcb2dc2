"""The whole Service Bus path: sidecar -> broker -> control plane, and cancels back.

The broker is the AMQP 1.0 test broker in tests/servicebus_broker (Microsoft's
emulator needs Docker); the SDK on both ends is the real azure-servicebus.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heartbeat.cli import command
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.emulator.app import SERVICEBUS_ENV
from tests.conftest import Runs
from tests.driver_standin import DriverStandIn, wait_for
from tests.servicebus_broker import BrokerProcess
from tests.servicebus_broker.fixture import servicebus_broker
from verifier.run import verify_run

__all__ = ["servicebus_broker"]


@pytest.fixture
def bus_world(
    servicebus_broker: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EmulatorProcess, Runs]]:
    monkeypatch.setenv(SERVICEBUS_ENV, servicebus_broker.connection_string)
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        yield emu, Runs(emu, tmp_path)
    finally:
        emu.stop()


def sidecar(emu: EmulatorProcess, bundle: Path, token: Path, bus: str) -> subprocess.Popen[bytes]:
    argv = command(
        bundle,
        emu.url,
        token,
        emu.state / "tee",
        2.0,
        trust_root=emu.trust_root,
        transport="servicebus",
        spark_ui="http://127.0.0.1:9",
    )
    env = {**os.environ, "JOB_SERVICEBUS_CONNECTION": bus, "JOBRUNTIME_DEV": "1"}
    return subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)


def beats(emu: EmulatorProcess, run_id: str) -> list[dict[str, Any]]:
    with emu.client("operator", retry_for=10) as c:
        return [
            e.details
            for e in c.audit().entries
            if e.run_id == run_id and e.event == "heartbeat" and e.actor == "servicebus"
        ]


def test_heartbeats_over_service_bus_arrive_in_order_and_cancel_comes_back(
    bus_world: tuple[EmulatorProcess, Runs], servicebus_broker: BrokerProcess, tmp_path: Path
) -> None:
    emu, runs = bus_world
    run_id = runs.approved()
    bundle = verify_run(runs.config(run_id)).parent
    token = tmp_path / "token"
    token.write_text(emu.token("verifier"))
    driver = DriverStandIn(emu, bundle, run_id)
    proc = sidecar(emu, bundle, token, servicebus_broker.connection_string)
    try:
        assert wait_for(lambda: len(beats(emu, run_id)) >= 3, 30)
        # The broker restarts: the sidecar and the control plane reconnect.
        before = len(beats(emu, run_id))
        servicebus_broker.restart()
        assert wait_for(lambda: len(beats(emu, run_id)) >= before + 3, 40)
        seqs = [b["seq"] for b in beats(emu, run_id)]
        assert seqs == sorted(seqs)
        # A cancel reaches the sidecar through the cancel queue and stops the driver.
        with emu.client("operator") as c:
            c.cancel(run_id, "stop via the bus")
        assert driver.cancelled.wait(30)
    finally:
        driver.watch.stop()
        (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "cancelled"}))
        proc.terminate()
        proc.wait(20)


def test_killing_the_sidecar_on_service_bus_fails_the_run_in_time(
    bus_world: tuple[EmulatorProcess, Runs], servicebus_broker: BrokerProcess, tmp_path: Path
) -> None:
    emu, runs = bus_world
    run_id = runs.approved()
    bundle = verify_run(runs.config(run_id)).parent
    token = tmp_path / "token"
    token.write_text(emu.token("verifier"))
    proc = sidecar(emu, bundle, token, servicebus_broker.connection_string)
    try:
        assert wait_for(lambda: len(beats(emu, run_id)) >= 2, 30)
        proc.kill()
        killed = time.monotonic()
        with emu.client("operator") as c:
            assert wait_for(lambda: c.status(run_id).outcome_reason == "heartbeat-timeout", 20)
        assert time.monotonic() - killed <= 3 * 2 + 2 + 3  # timeout + interval (+ slack)
    finally:
        proc.kill()
