"""The emulator's run lifecycle over real HTTP: submit, approve, claim, cancel, restart."""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from jobruntime.controlplane.api import RunStatus
from jobruntime.controlplane.audit import verify_chain
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.errors import UnknownKeyError
from jobruntime.signing import envelope
from jobruntime.signing.approvals import sign_approval
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import CONTROL_PLANE, TrustRoot
from jobruntime.spec.codec import sha256_digest
from jobruntime.spec.models import ClaimReceipt, utcnow
from tests.conftest import Runs
from tests.sessions import TestPod, api, error_code

SENTINEL = "s3cr3t-SENTINEL-7f4c1a"


def status(emu: EmulatorProcess, run_id: str) -> RunStatus:
    with emu.client("operator") as c:
        return c.status(run_id)


def post_approval(emu: EmulatorProcess, run_id: str, owner: str, env: Any) -> requests.Response:
    return api(emu, f"owner:{owner}", "POST", f"/runs/{run_id}/approvals", {"envelope": env})


def claim(
    emu: EmulatorProcess, run_id: str, claim_id: str, pod: TestPod | None = None
) -> requests.Response:
    """A driver pod's verifier claiming: attest (a fresh pod unless given), then claim."""
    return (pod or TestPod(emu, run_id)).claim(claim_id)


# --- submit and approve ----------------------------------------------------------------


def test_submit_is_pending_approval(emulator: EmulatorProcess, runs: Runs) -> None:
    resp = api(
        emulator,
        "submitter",
        "POST",
        "/runs",
        runs.request().model_dump(mode="json", exclude_none=True),
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["state"] == "pending_approval"
    st = status(emulator, body["run_id"])
    assert st.state == "pending_approval"
    assert st.spec_digest == body["spec_digest"]
    assert st.required_owners == ["org-a", "org-b"]
    assert st.approved_by == {"org-a": 0, "org-b": 0}
    # The digest is the SHA-256 of the signed payload, and the control plane signed it.
    verified = runs.signed(body["run_id"])
    assert verified.digest == body["spec_digest"]
    assert verified.spec.run_id == body["run_id"]
    root = TrustRoot.load(emulator.trust_root)
    keyids = envelope.verify(verified.envelope, root, root.control_plane, CONTROL_PLANE, utcnow())
    assert keyids == root.control_plane.distinct


def test_each_owner_approves_then_approved(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    first = post_approval(emulator, run_id, "org-a", runs.approval(run_id, "org-a"))
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "pending_approval"
    assert first.json()["owner"] == "org-a"
    assert first.json()["keyid"] == SigningKey.load(emulator.owner_key("org-a")).keyid
    st = status(emulator, run_id)
    assert (st.state, st.approved_by) == ("pending_approval", {"org-a": 1, "org-b": 0})

    second = post_approval(emulator, run_id, "org-b", runs.approval(run_id, "org-b"))
    assert second.status_code == 200, second.text
    assert second.json()["state"] == "approved"
    st = status(emulator, run_id)
    assert (st.state, st.approved_by) == ("approved", {"org-a": 1, "org-b": 1})
    with emulator.client("verifier") as c:
        assert len(c.signed_run(run_id).approvals) == 2


def test_duplicate_approval_by_one_key_counts_once(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    for _ in range(3):  # three distinct envelopes (different approved_at), one key
        resp = post_approval(emulator, run_id, "org-a", runs.approval(run_id, "org-a"))
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == "pending_approval"
    st = status(emulator, run_id)
    assert st.approved_by == {"org-a": 1, "org-b": 0}
    assert st.state == "pending_approval"


def test_approval_by_unknown_key_is_refused(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    forged = runs.approval(run_id, "org-a", key=SigningKey.generate())
    resp = post_approval(emulator, run_id, "org-a", forged)
    assert resp.status_code == 400, resp.text
    assert error_code(resp) == "signature.unknown_key"
    assert status(emulator, run_id).approved_by == {"org-a": 0, "org-b": 0}


def test_approval_with_tampered_signature_is_refused(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    env = runs.approval(run_id, "org-a")
    other = runs.approval(runs.submit(), "org-a")
    env["signatures"][0]["sig"] = other["signatures"][0]["sig"]
    resp = post_approval(emulator, run_id, "org-a", env)
    assert resp.status_code == 400, resp.text
    assert error_code(resp) == "signature.invalid"


def test_approval_for_another_spec_digest_is_refused(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    verified = runs.signed(run_id)
    key = SigningKey.load(emulator.owner_key("org-a"))
    wrong = sign_approval(verified.spec, sha256_digest(b"another spec"), "org-a", key, utcnow())
    resp = post_approval(emulator, run_id, "org-a", wrong)
    assert resp.status_code == 400, resp.text
    assert error_code(resp) == "approval.invalid"
    assert status(emulator, run_id).approved_by == {"org-a": 0, "org-b": 0}


def test_approval_for_another_run_is_refused(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id, other = runs.submit(), runs.submit()
    resp = post_approval(emulator, run_id, "org-a", runs.approval(other, "org-a"))
    assert resp.status_code == 400, resp.text
    assert error_code(resp) == "approval.invalid"


def test_approval_after_claim_is_409(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.approved()
    assert claim(emulator, run_id, secrets.token_hex(32)).status_code == 200
    resp = post_approval(emulator, run_id, "org-a", runs.approval(run_id, "org-a"))
    assert resp.status_code == 409, resp.text
    assert error_code(resp) == "run.claimed"


def test_unknown_run_is_404(emulator: EmulatorProcess) -> None:
    resp = api(emulator, "operator", "GET", "/runs/run-does-not-exist")
    assert resp.status_code == 404, resp.text
    assert error_code(resp) == "run.not_found"


# --- claim ------------------------------------------------------------------------------


def test_claim_returns_a_receipt_signed_by_the_control_plane(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run_id = runs.approved()
    claim_id = secrets.token_hex(32)
    resp = claim(emulator, run_id, claim_id)
    assert resp.status_code == 200, resp.text
    receipt = resp.json()["receipt"]
    assert receipt["payloadType"] == "application/vnd.jobruntime.claim+json"
    env = envelope.from_json(receipt, envelope.CLAIM_TYPE, "claim receipt")
    root = TrustRoot.load(emulator.trust_root)
    keyids = envelope.verify(env, root, root.control_plane, CONTROL_PLANE, utcnow())
    assert keyids == {SigningKey.load(emulator.state / "control-plane.key").keyid}
    parsed = ClaimReceipt.model_validate_json(env.payload)
    st = status(emulator, run_id)
    assert (parsed.run_id, parsed.claim_id, parsed.spec_digest) == (
        run_id,
        claim_id,
        st.spec_digest,
    )
    assert st.state == "claimed"
    assert st.claimed_at == parsed.claimed_at
    # The receipt is not mistaken for an owner's signature.
    with pytest.raises(UnknownKeyError):
        envelope.verify(env, root, root.owners["org-a"], "owner org-a", utcnow())


def test_second_claim_with_another_id_is_replayed(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.approved()
    assert claim(emulator, run_id, secrets.token_hex(32)).status_code == 200
    resp = claim(emulator, run_id, secrets.token_hex(32))
    assert resp.status_code == 409, resp.text
    assert error_code(resp) == "claim.replayed"


def test_same_claim_id_is_idempotent(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.approved()
    claim_id, pod = secrets.token_hex(32), TestPod(emulator, run_id)
    first = claim(emulator, run_id, claim_id, pod)
    again = claim(emulator, run_id, claim_id, pod)
    assert first.status_code == again.status_code == 200
    assert again.json()["receipt"] == first.json()["receipt"]


def test_concurrent_claims_have_one_winner(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.approved()
    ids = [secrets.token_hex(32) for _ in range(8)]
    with ThreadPoolExecutor(len(ids)) as pool:
        answers = list(pool.map(lambda i: claim(emulator, run_id, i), ids))
    assert sorted(r.status_code for r in answers) == [200] + [409] * 7
    assert {error_code(r) for r in answers if r.status_code == 409} == {"claim.replayed"}


def test_claim_before_approval_is_409(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    runs.approve(run_id, "org-a")  # one of two owners
    resp = claim(emulator, run_id, secrets.token_hex(32))
    assert resp.status_code == 409, resp.text
    assert error_code(resp) == "claim.not_approved"
    assert status(emulator, run_id).state == "pending_approval"


def test_cancel_then_claim_is_409(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.approved()
    resp = api(emulator, "operator", "POST", f"/runs/{run_id}/cancel", {"reason": "stop it"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "cancelled"
    assert resp.json()["cancel_reason"] == "stop it"
    refused = claim(emulator, run_id, secrets.token_hex(32))
    assert refused.status_code == 409, refused.text
    assert error_code(refused) == "claim.cancelled"
    # Cancelling again is harmless and keeps the first reason.
    again = api(emulator, "submitter", "POST", f"/runs/{run_id}/cancel", {"reason": "again"})
    assert again.status_code == 200
    assert again.json()["cancel_reason"] == "stop it"


# --- request validation ----------------------------------------------------------------


def test_submit_with_expired_window_is_400(emulator: EmulatorProcess, runs: Runs) -> None:
    now = utcnow()
    body = runs.request().model_dump(mode="json", exclude_none=True)
    body["validity"] = {
        "not_before": (now - timedelta(hours=2)).isoformat(),
        "expires": (now - timedelta(hours=1)).isoformat(),
    }
    resp = api(emulator, "submitter", "POST", "/runs", body)
    assert resp.status_code == 400, resp.text
    assert error_code(resp) == "request.invalid"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.update(unexpected_field=SENTINEL), id="top-level"),
        pytest.param(lambda b: b["module"].update(extra=SENTINEL), id="nested"),
        pytest.param(lambda b: b["inputs"][0].update(password=SENTINEL), id="in-list"),
        pytest.param(lambda b: b.update(job_id=SENTINEL), id="bad-value"),
        pytest.param(lambda b: b["parameters"].update(k={"nested": SENTINEL}), id="bad-param"),
    ],
)
def test_invalid_submit_is_422_without_echoing_values(
    emulator: EmulatorProcess, runs: Runs, mutate: Any
) -> None:
    body = runs.request().model_dump(mode="json", exclude_none=True)
    mutate(body)
    resp = api(emulator, "submitter", "POST", "/runs", body)
    assert resp.status_code == 422, resp.text
    assert error_code(resp) == "request.invalid"
    assert SENTINEL not in resp.text
    assert SENTINEL.lower() not in resp.text.lower()


def test_body_that_is_not_json_is_422(emulator: EmulatorProcess) -> None:
    resp = requests.post(
        f"{emulator.url}/v1/runs",
        headers={
            "Authorization": f"Bearer {emulator.token('submitter')}",
            "Content-Type": "application/json",
        },
        data=b'{"job_id": "' + SENTINEL.encode() + b'", ',
        timeout=10,
    )
    assert resp.status_code == 422, resp.text
    assert error_code(resp) == "request.invalid"
    assert SENTINEL not in resp.text


# --- restart -----------------------------------------------------------------------------


@pytest.fixture
def own_emulator(tmp_path: Path) -> Any:
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        yield emu
    finally:
        emu.stop()


def test_restart_keeps_runs_approvals_claims_and_audit(
    own_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    emu = own_emulator
    runs = Runs(emu, tmp_path)
    approved = runs.approved()
    claimed = runs.approved()
    claim_id, pod = secrets.token_hex(32), TestPod(emu, claimed)
    receipt = claim(emu, claimed, claim_id, pod).json()["receipt"]
    cancelled = runs.submit()
    api(emu, "operator", "POST", f"/runs/{cancelled}/cancel", {"reason": "r"})

    def snapshot(run_id: str) -> tuple[str, bytes]:
        with emu.client("operator") as c:
            return c.status(run_id).model_dump_json(), c.signed_run_bytes(run_id)

    before = {r: snapshot(r) for r in (approved, claimed, cancelled)}
    with emu.client("operator") as c:
        audit_before = c.audit().entries
    old_pid = emu.proc.pid if emu.proc else None

    emu.restart()
    assert emu.proc is not None and emu.proc.pid != old_pid

    for run_id, snap in before.items():
        assert snapshot(run_id) == snap
    assert json.loads(before[approved][0])["state"] == "approved"
    # The approved run can still be claimed, once.
    resp = claim(emu, approved, secrets.token_hex(32))
    assert resp.status_code == 200, resp.text
    again = claim(emu, approved, secrets.token_hex(32))
    assert error_code(again) == "claim.replayed"
    # The claimed run keeps its receipt and its one-time claim.
    assert claim(emu, claimed, claim_id, pod).json()["receipt"] == receipt
    assert error_code(claim(emu, claimed, secrets.token_hex(32))) == "claim.replayed"
    assert error_code(claim(emu, cancelled, secrets.token_hex(32))) == "claim.cancelled"
    # The audit chain goes on from where it was and still verifies.
    with emu.client("operator") as c:
        audit_after = c.audit().entries
    assert audit_after[: len(audit_before)] == audit_before
    assert len(audit_after) > len(audit_before)
    head = verify_chain(audit_after, TrustRoot.load(emu.trust_root))
    assert head == audit_after[-1].hash
