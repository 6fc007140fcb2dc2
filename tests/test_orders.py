"""Signed orders: a pod acts only on the control plane's signature, for its own run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.job.handoff import (
    CANCEL_ORDER,
    CancelWatch,
    hand_cancel_to_driver,
    read_cancel_order,
)
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.orders import OrderError, sign_cancel, verify_cancel
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import utcnow

RUN, OTHER = "run-aaaaaaaa-0001", "run-bbbbbbbb-0002"


def test_cancel_orders_verify_only_for_their_run_and_signer(emulator: EmulatorProcess) -> None:
    root = TrustRoot.load(emulator.trust_root)
    cp = SigningKey.load(emulator.state / "control-plane.key")
    now = utcnow()
    order = sign_cancel(cp, RUN, "owner withdrew", now)
    assert verify_cancel(order, root, RUN, now).reason == "owner withdrew"
    refused = {
        "another run": (order, OTHER),
        "another signer": (sign_cancel(SigningKey.generate(), RUN, "x", now), RUN),
        "no order": (None, RUN),
        "an approval-typed envelope": (
            envelope.to_json(envelope.sign(b"{}", envelope.APPROVAL_TYPE, [cp])),
            RUN,
        ),
        "a flipped payload": ({**order, "payload": order["payload"][:-4] + "AAAA"}, RUN),
    }
    for what, (obj, run_id) in refused.items():
        with pytest.raises(OrderError) as info:
            verify_cancel(obj, root, run_id, now)
        assert info.value.code == "order.unverified", what


def test_the_driver_obeys_only_a_verified_order_handed_over_the_pod_volume(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """Whoever writes to the volume cannot stop a run: the driver re-verifies the order."""
    root = TrustRoot.load(emulator.trust_root)
    cp = SigningKey.load(emulator.state / "control-plane.key")
    now = utcnow()
    forged = {
        "another signer": sign_cancel(SigningKey.generate(), RUN, "x", now),
        "another run": sign_cancel(cp, OTHER, "x", now),
        "not an envelope": {"cancel": True},
    }
    for what, order in forged.items():
        hand_cancel_to_driver(tmp_path, order)
        assert not read_cancel_order(tmp_path, root, RUN), what
    (tmp_path / CANCEL_ORDER).write_bytes(b"{" * 100_000)  # huge and unparseable
    assert not read_cancel_order(tmp_path, root, RUN)
    (tmp_path / CANCEL_ORDER).write_bytes(b"\xff not json")
    assert not read_cancel_order(tmp_path, root, RUN)

    cancelled = threading.Event()
    hand_cancel_to_driver(tmp_path, forged["another signer"])
    watch = CancelWatch(tmp_path, root, RUN, cancelled.set, every=0.05).start()
    try:
        assert not cancelled.wait(1.0)  # the forgery sits there, ignored
        hand_cancel_to_driver(tmp_path, sign_cancel(cp, RUN, "owner withdrew", now))
        assert cancelled.wait(15)
    finally:
        watch.stop()
