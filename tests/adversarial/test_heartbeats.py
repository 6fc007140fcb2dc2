"""Heartbeats and cancel orders under attack: another run's session, forged orders in transit.

The control plane is the real emulator; sessions come from tests/sessions.py's ``TestPod``.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobruntime.controlplane.api import Heartbeat, SignedHeartbeat
from jobruntime.keyrelease import jwe
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.orders import sign_cancel, verify_cancel
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from tests.adversarial.helpers import refused, state
from tests.conftest import Runs
from tests.sessions import TestPod, api


def signed_beat(pod: TestPod, run_id: str, **fields: Any) -> dict[str, Any]:
    beat = Heartbeat(run_id=run_id, seq=0, at=utcnow(), **{"state": "running", **fields})
    jws = jwe.sign(pod.keys["heartbeat"], canonical(beat))
    return SignedHeartbeat(session=pod.tokens["heartbeat"], jws=jws).model_dump()


@pytest.mark.attack(
    id="heartbeat-for-another-run",
    threat="a run's genuine heartbeat session speaks for another run: a final 'failed' (or "
    "'succeeded') sent to end a run it does not belong to",
    adversary="a compromised pod of another run; whoever controls the namespace",
    mechanism="a heartbeat session is bound to its run: a signed body naming another run than "
    "the session's, or sent to another run's route, is refused",
)
def test_a_heartbeat_session_cannot_speak_for_another_run(runs: Runs) -> None:
    mine, victim = runs.approved(), runs.approved()
    pod, victim_pod = TestPod(runs.emu, mine), TestPod(runs.emu, victim)
    assert pod.claim().status_code == 200 and victim_pod.claim().status_code == 200
    pod.session("heartbeat")
    final = {"state": "failed", "final": True}
    # Signed for the victim, sent to the victim's route.
    body = signed_beat(pod, victim, **final)
    resp = api(runs.emu, "verifier", "POST", f"/runs/{victim}/heartbeats", body)
    refused(resp, 403, "heartbeat.forged")
    # Signed for its own run, sent to the victim's route.
    body = signed_beat(pod, mine, **final)
    resp = api(runs.emu, "verifier", "POST", f"/runs/{victim}/heartbeats", body)
    refused(resp, 403, "heartbeat.forged")
    assert state(runs.emu, victim) == "claimed"
    with runs.emu.client("operator") as c:
        assert c.status(victim).last_heartbeat_at is None
    assert state(runs.emu, mine) == "claimed"


@pytest.mark.attack(
    id="cancel-order-forged-in-transit",
    threat="a cancel order re-signed by another key, replayed from another run, or with its "
    "reason edited, injected into a heartbeat answer or the pod volume",
    adversary="network, Service Bus writer, whoever writes the pod volume",
    mechanism="a cancel is a DSSE CancelOrder signed by the control plane for this run, "
    "verified against the pod's pinned trust root",
)
def test_forged_or_edited_cancel_orders_are_not_obeyed(runs: Runs) -> None:
    run_id, other = runs.approved(), runs.approved()
    root = TrustRoot.load(runs.emu.trust_root)
    cp = SigningKey.load(runs.emu.state / "control-plane.key")
    now = utcnow()
    genuine = sign_cancel(cp, run_id, "owner withdrew", now)
    assert verify_cancel(genuine, root, run_id, now).reason == "owner withdrew"
    edited = dict(genuine)
    edited["payload"] = sign_cancel(cp, run_id, "operator says so", now)["payload"]
    relabelled = sign_cancel(SigningKey.generate(), run_id, "x", now)
    relabelled["signatures"][0]["keyid"] = root.control_plane.keyids[0]
    for what, order in {
        "edited reason": edited,
        "stranger relabelled as the control plane": relabelled,
        "another run's genuine order": sign_cancel(cp, other, "owner withdrew", now),
    }.items():
        with pytest.raises(Exception) as info:  # noqa: PT011 - the code is asserted below
            verify_cancel(order, root, run_id, now)
        assert getattr(info.value, "code", None) == "order.unverified", what
    assert state(runs.emu, run_id) == state(runs.emu, other) == "approved"
