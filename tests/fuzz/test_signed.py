"""DSSE envelopes, approvals, signed specs, the control plane's spec answer, cancel orders.

Inputs are valid signed documents with the envelope mutated (so the shape and signature
checks are exercised) or with the payload mutated and signed again by the right key (so
the fuzzing reaches the schema, approval, validity and run-id checks behind them).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from jobruntime.signing import envelope
from jobruntime.signing.approvals import check_approval
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.orders import OrderError, verify_cancel
from jobruntime.signing.roots import PlainTrustRoot
from jobruntime.signing.trustroot import Role, TrustedKey, TrustRoot
from jobruntime.spec import plain
from jobruntime.spec.codec import canonical, sha256_digest
from jobruntime.spec.models import ClaimReceipt
from jobruntime.verification.signed import (
    verify_response,
    verify_signed_run,
    verify_signed_run_plain,
)
from tests.fuzz.support import (
    Refused,
    byte_mutation,
    dump,
    json_inputs,
    mutated_tree,
    typed,
)
from tests.fuzz.test_spec import APPROVAL, CANCEL, CLAIM, NOW, spec_doc

AT = NOW + timedelta(minutes=10)  # inside the spec's window
RUN_ID = "run-abcdef-1234"


class Keys:
    """The control plane's key and org-a's two approval keys (ECDSA and Ed25519)."""

    def __init__(self) -> None:
        self.cp = SigningKey.generate()
        self.owner = SigningKey.generate("ecdsa-p256")
        self.owner2 = SigningKey.generate()
        self.stranger = SigningKey.generate()
        window = {
            "not_before": datetime(2029, 1, 1, tzinfo=UTC),
            "not_after": datetime(2031, 1, 1, tzinfo=UTC),
        }
        trusted = [
            TrustedKey(keyid=k.keyid, public_key_pem=k.public_pem, **window)
            for k in (self.cp, self.owner, self.owner2)
        ]
        self.root = TrustRoot(
            keys=trusted,
            control_plane=Role(keyids=[self.cp.keyid]),
            owners={"org-a": Role(keyids=[self.owner.keyid, self.owner2.keyid])},
        )
        self.plain_root = PlainTrustRoot.from_json(json.loads(self.root.to_json()))


@cache
def keys() -> Keys:
    return Keys()


def signed(payload: bytes, payload_type: str, *signers: SigningKey) -> dict[str, Any]:
    return envelope.to_json(envelope.sign(payload, payload_type, signers))


SPEC_PAYLOAD = canonical(spec_doc())
SPEC_DIGEST = sha256_digest(SPEC_PAYLOAD)


def approval_payload(**changes: Any) -> bytes:
    return canonical(APPROVAL | {"spec_digest": SPEC_DIGEST} | changes)


def valid_run() -> dict[str, Any]:
    k = keys()
    return {
        "envelope": signed(SPEC_PAYLOAD, envelope.SPEC_TYPE, k.cp),
        "approvals": [signed(approval_payload(), envelope.APPROVAL_TYPE, k.owner)],
    }


def test_the_seed_documents_verify() -> None:
    """The mutations start from documents every verifier accepts."""
    run = valid_run()
    k = keys()
    assert verify_signed_run(run["envelope"], run["approvals"], k.root, now=AT, run_id=RUN_ID)
    assert verify_signed_run_plain(
        run["envelope"], run["approvals"], k.plain_root, now=AT, run_id=RUN_ID
    )
    assert verify_response(dump(run), k.root, now=AT, run_id=RUN_ID)
    order = signed(canonical(CANCEL), envelope.ORDER_TYPE, k.cp)
    assert verify_cancel(order, k.plain_root, RUN_ID, AT).run_id == RUN_ID


# --- strategies -------------------------------------------------------------------------

signers = st.sampled_from(["cp", "owner", "owner2", "stranger", "none", "twice"])


def _sign_as(payload: bytes, payload_type: str, who: str) -> dict[str, Any]:
    k = keys()
    chosen = {
        "cp": [k.cp],
        "owner": [k.owner],
        "owner2": [k.owner2],
        "stranger": [k.stranger],
        "none": [],
        "twice": [k.owner, k.owner2, k.cp],
    }[who]
    return signed(payload, payload_type, *chosen)


@st.composite
def envelopes(draw: st.DrawFn, payload: bytes, payload_type: str, signer: str) -> Any:
    """The valid envelope, its JSON mutated, or a mutated payload signed (mostly) correctly."""
    how = draw(st.sampled_from(["valid", "envelope", "payload", "payload"]))
    if how == "valid":
        return _sign_as(payload, payload_type, signer)
    if how == "envelope":
        return draw(mutated_tree(_sign_as(payload, payload_type, signer)))
    doc = json.loads(payload)
    body = draw(json_inputs(doc, keys=list(doc)))
    who = draw(st.one_of(st.just(signer), signers))
    kind = draw(st.sampled_from([payload_type, payload_type, envelope.APPROVAL_TYPE, ""]))
    return _sign_as(body, kind, who)


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    approvals = draw(
        st.lists(envelopes(approval_payload(), envelope.APPROVAL_TYPE, "owner"), max_size=3)
    )
    return {
        "envelope": draw(envelopes(SPEC_PAYLOAD, envelope.SPEC_TYPE, "cp")),
        "approvals": approvals,
    }


# --- properties -------------------------------------------------------------------------


@given(st.one_of(st.binary(max_size=512), runs().map(dump).flatmap(byte_mutation)))
def test_envelope_from_bytes(data: bytes) -> None:
    typed(envelope.from_bytes, data, envelope.SPEC_TYPE, "spec envelope")


@given(runs())
def test_signed_run_model_and_plain(run: dict[str, Any]) -> None:
    """Steps 1-6 as the verifier and as the sidecars run them: same inputs, typed errors,
    and a spec the sidecars accept is one the verifier accepts."""
    k = keys()
    model = typed(
        verify_signed_run, run["envelope"], run["approvals"], k.root, now=AT, run_id=RUN_ID
    )
    sidecar = typed(
        verify_signed_run_plain,
        run["envelope"],
        run["approvals"],
        k.plain_root,
        now=AT,
        run_id=RUN_ID,
    )
    if not isinstance(sidecar, Refused):
        assert not isinstance(model, Refused), model


@given(
    st.one_of(
        runs().map(dump),
        runs().map(dump).flatmap(byte_mutation),
        mutated_tree({"envelope": {}, "approvals": []}).map(dump),
    )
)
def test_control_plane_spec_answer(body: bytes) -> None:
    """``GET /runs/{id}/spec`` as the verifier reads it off the network."""
    typed(verify_response, body, keys().root, now=AT, run_id=RUN_ID)


@given(envelopes(approval_payload(), envelope.APPROVAL_TYPE, "owner"))
def test_one_approval(obj: Any) -> None:
    k = keys()
    spec = plain.parse_spec(SPEC_PAYLOAD)
    typed(check_approval, obj, spec, SPEC_DIGEST, k.plain_root, AT)
    typed(check_approval, obj, spec, SPEC_DIGEST, k.root, AT)


@given(envelopes(canonical(CANCEL), envelope.ORDER_TYPE, "cp"))
def test_cancel_order(obj: Any) -> None:
    """An order off the network or the broker: verified, for this run, or ``OrderError``."""
    result = typed(verify_cancel, obj, keys().plain_root, RUN_ID, AT)
    if isinstance(result, Refused):
        assert isinstance(result.error, OrderError)


@given(envelopes(canonical(CLAIM), envelope.CLAIM_TYPE, "cp"))
def test_claim_receipt(obj: Any) -> None:
    k = keys()
    typed(envelope.open_signed, obj, envelope.CLAIM_TYPE, ClaimReceipt, "receipt", k.root, AT)
