"""Signed specs and approvals under attack between the control plane and the verifier.

The emulator is real; a ``TamperingClient`` alters its answers as a network attacker
or a compromised proxy would. Each test asserts the verifier's exact code, that no
bundle was written, and that the run was neither claimed nor keyed.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from jobruntime.controlplane.audit import verify_checkpoint
from jobruntime.errors import JobRuntimeError
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.orders import verify_cancel
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import utcnow
from tests.adversarial.helpers import (
    audited,
    reasons,
    refused,
    state,
    tampering,
    unclaimed,
    verifier_refuses,
)
from tests.conftest import Runs
from tests.sessions import TestPod, api
from tests.tamper import payload

Doc = dict[str, Any]


def signatures(doc: Doc, sigs: list[Doc]) -> Doc:
    return {**doc, "envelope": {**doc["envelope"], "signatures": sigs}}


@pytest.mark.attack(
    id="spec-signatures-stripped",
    threat="a spec served with its signatures removed is taken as unsigned-but-valid",
    adversary="network, compromised proxy",
    mechanism="a DSSE envelope must carry signatures; verify, then parse",
)
def test_a_spec_with_its_signatures_stripped_is_refused(runs: Runs) -> None:
    run_id = runs.approved()
    err = verifier_refuses(
        "envelope.malformed",
        runs.config(run_id),
        client=tampering(runs, spec=lambda d: signatures(d, [])),
    )
    assert "carries no signatures" in err.message
    unclaimed(runs.emu, run_id)


@pytest.mark.attack(
    id="spec-signature-relabelled",
    threat="a signature's key id is relabelled: the control plane's signature passed off as "
    "an owner key's, or a stranger's signature labelled with the control plane's key id",
    adversary="network, compromised proxy",
    mechanism="each signature is checked under the key its key id names in the pinned trust "
    "root, and only keys of the control-plane role count",
)
def test_relabelled_spec_signatures_are_refused(runs: Runs) -> None:
    run_id = runs.approved()
    root = TrustRoot.load(runs.emu.trust_root)
    owner_keyid = root.owners["org-a"].keyids[0]
    cp_keyid = root.control_plane.keyids[0]

    def as_owner(doc: Doc) -> Doc:
        (sig,) = doc["envelope"]["signatures"]
        return signatures(doc, [{**sig, "keyid": owner_keyid}])

    verifier_refuses(
        "signature.unknown_key", runs.config(run_id), client=tampering(runs, spec=as_owner)
    )
    stranger = SigningKey.generate()

    def stranger_as_cp(doc: Doc) -> Doc:
        raw = json.dumps(payload(doc)).encode()
        env = envelope.sign(raw, envelope.SPEC_TYPE, [stranger])
        (sig,) = envelope.to_json(env)["signatures"]
        return {**doc, "envelope": {**env.to_dict(), "signatures": [{**sig, "keyid": cp_keyid}]}}

    verifier_refuses(
        "signature.invalid", runs.config(run_id), client=tampering(runs, spec=stranger_as_cp)
    )
    unclaimed(runs.emu, run_id)


@pytest.mark.attack(
    id="spec-signature-transplanted",
    threat="the control plane's genuine signature of one spec is moved onto another payload",
    adversary="network, compromised proxy",
    mechanism="the signature covers DSSE's pre-authentication encoding of type and payload",
)
def test_a_signature_moved_from_another_spec_is_refused(runs: Runs) -> None:
    mine, other = runs.approved(), runs.approved()
    with runs.emu.client("verifier") as c:
        theirs = json.loads(c.signed_run_bytes(other))["envelope"]["signatures"]
    verifier_refuses(
        "signature.invalid",
        runs.config(mine),
        client=tampering(runs, spec=lambda d: signatures(d, theirs)),
    )
    unclaimed(runs.emu, mine)


@pytest.mark.attack(
    id="approval-signatures-reordered",
    threat="approvals reordered and one owner's signature moved onto another owner's "
    "approval, to count once for two owners",
    adversary="network, compromised proxy",
    mechanism="each approval's signature is verified over its own payload, which must name "
    "the signing owner; thresholds count distinct valid keys per owner, whatever the order",
)
def test_an_approval_signature_moved_to_another_owners_approval_counts_for_nothing(
    runs: Runs,
) -> None:
    run_id = runs.approved()

    def reorder_and_move(doc: Doc) -> Doc:
        by_owner = {json.loads(_decoded(a))["owner"]: a for a in doc["approvals"]}
        moved = {**by_owner["org-b"], "signatures": by_owner["org-a"]["signatures"]}
        return {**doc, "approvals": [moved, by_owner["org-a"]]}

    err = verifier_refuses(
        "approval.threshold", runs.config(run_id), client=tampering(runs, spec=reorder_and_move)
    )
    assert "org-b has 0 of 1" in err.message and "org-a" not in err.message.split(";")[0]
    unclaimed(runs.emu, run_id)


def _decoded(env: Doc) -> bytes:
    import base64

    return base64.b64decode(env["payload"])


@pytest.mark.attack(
    id="approval-key-substituted",
    threat="an approval signed by the attacker's own key, labelled with an owner's key id",
    adversary="anyone holding an owner's bearer token but not its approval key",
    mechanism="the control plane verifies each approval under the pinned trust root before "
    "recording it; nothing is counted or audited as an approval",
)
def test_an_approval_by_a_substituted_key_is_not_recorded(runs: Runs) -> None:
    run_id = runs.submit()
    root = TrustRoot.load(runs.emu.trust_root)
    forged = runs.approval(run_id, "org-b", key=SigningKey.generate())
    forged["signatures"][0]["keyid"] = root.owners["org-b"].keyids[0]
    resp = api(runs.emu, "owner:org-b", "POST", f"/runs/{run_id}/approvals", {"envelope": forged})
    refused(resp, 400, "signature.invalid")
    with runs.emu.client("operator") as c:
        assert c.status(run_id).approved_by == {"org-a": 0, "org-b": 0}
    assert state(runs.emu, run_id) == "pending_approval"
    assert audited(runs.emu, run_id, "run.approved") == []
    assert reasons(runs.emu, run_id, "approval.rejected") == ["signature.invalid"]


@pytest.mark.attack(
    id="payload-type-confusion",
    threat="one signed document passed off as another: a claim receipt as the spec, the spec "
    "as a claim receipt, a cancel order or an audit checkpoint, a receipt as an approval "
    "(the control plane signs spec, receipt, order and checkpoint with the same key)",
    adversary="network, compromised proxy, whoever writes the pod volume",
    mechanism="every reader requires its own DSSE payloadType, which the signature covers",
)
def test_signed_documents_are_not_accepted_as_one_another(runs: Runs) -> None:
    root = TrustRoot.load(runs.emu.trust_root)
    donor = runs.approved()
    receipt = TestPod(runs.emu, donor).claim().json()["receipt"]
    assert receipt["payloadType"] == envelope.CLAIM_TYPE
    run_id = runs.approved()
    with runs.emu.client("verifier") as c:
        spec_env = json.loads(c.signed_run_bytes(run_id))["envelope"]
    # A claim receipt served as the spec.
    verifier_refuses(
        "envelope.malformed",
        runs.config(run_id),
        client=tampering(runs, spec=lambda d: {**d, "envelope": receipt}),
    )
    unclaimed(runs.emu, run_id)
    # The spec (or a receipt) read as a cancel order, or as the audit log's checkpoint.
    for doc in (spec_env, receipt):
        with pytest.raises(JobRuntimeError) as order:
            verify_cancel(doc, root, run_id, utcnow())
        assert order.value.code == "order.unverified"
        with pytest.raises(JobRuntimeError) as checkpoint:
            verify_checkpoint(doc, root, utcnow())
        assert checkpoint.value.code == "audit.chain"
        assert "envelope.malformed" in checkpoint.value.message
    # A control-plane-signed receipt posted as an owner's approval.
    pending = runs.submit()
    resp = api(runs.emu, "owner:org-a", "POST", f"/runs/{pending}/approvals", {"envelope": receipt})
    refused(resp, 400, "envelope.malformed")
    with runs.emu.client("operator") as c:
        assert c.status(pending).approved_by == {"org-a": 0, "org-b": 0}
    assert reasons(runs.emu, pending, "approval.rejected") == ["envelope.malformed"]
    # Last, the spec served as the claim receipt: the claim is spent, nothing is written.
    err = verifier_refuses(
        "claim.refused",
        runs.config(run_id),
        client=tampering(runs, claim=lambda _: spec_env),
    )
    assert "envelope.malformed" in err.message
    assert audited(runs.emu, run_id, "kms.released") == []


@pytest.mark.attack(
    id="spec-rollback",
    threat="an older signed spec of the same run (before its pods were named) replayed to "
    "the verifier with the owners' current approvals",
    adversary="network, compromised proxy, a stale cache",
    mechanism="approvals sign the exact spec digest; the older digest has none",
)
def test_an_older_signed_spec_of_the_same_run_is_refused(runs: Runs) -> None:
    run_id = runs.submit(workload={"isolation": "pod"})
    with runs.emu.client("verifier") as c:
        older = json.loads(c.signed_run_bytes(run_id))["envelope"]
    pods = {"isolation": "pod", "host_data": {"driver": "11" * 32, "executor": "22" * 32}}
    assert api(runs.emu, "submitter", "POST", f"/runs/{run_id}/workload", pods).ok
    runs.approve(run_id)
    assert payload({"envelope": older})["run_id"] == run_id  # genuinely signed, same run
    err = verifier_refuses(
        "approval.threshold",
        runs.config(run_id),
        client=tampering(runs, spec=lambda d: {**d, "envelope": older}),
    )
    assert "org-a has 0 of 1" in err.message
    assert "rejected approvals: approval.invalid" in err.message
    unclaimed(runs.emu, run_id)
    assert state(runs.emu, run_id) == "approved"


@pytest.mark.attack(
    id="claim-replayed-by-another-pod",
    threat="a second pod replays the winning pod's claim id to obtain a receipt for itself",
    adversary="whoever controls the namespace (holds the pods' bearer token, starts pods)",
    mechanism="the claim is one compare-and-set per run, bound to the claiming pod's "
    "attested verifier session; the same claim id is idempotent only for that session",
)
def test_a_claim_id_replayed_by_another_pod_is_refused(runs: Runs) -> None:
    run_id = runs.approved(**runs.datasets())
    claim_id = secrets.token_hex(32)
    winner = TestPod(runs.emu, run_id)
    assert winner.claim(claim_id).status_code == 200
    thief = TestPod(runs.emu, run_id)
    refused(thief.claim(claim_id), 409, "claim.replayed")
    claims = audited(runs.emu, run_id, "run.claimed")
    assert [d["pod"] for d in claims] == [winner.pod_id]
    assert thief.tokens == {}
    # Nor does the loser get a key agent session: it never claimed or joined.
    refused(thief.attest("key-agent"), 403, "kms.pod_not_of_run")
    assert audited(runs.emu, run_id, "kms.released") == []
