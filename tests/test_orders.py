"""Signed orders: a pod acts only on the control plane's signature, for its own run."""

from __future__ import annotations

import pytest

from jobruntime.emulator.process import EmulatorProcess
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
