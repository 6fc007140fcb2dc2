"""DSSE envelopes: signing payloads and verifying them against a role.

Verification counts distinct keys of the role that are valid now and whose
signature checks; when that falls short of the threshold, the most telling
per-signature failure is raised so the error names the real cause. Nothing here
imports pydantic or securesystemslib (see ``dsse``): the pod's sidecars verify with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobruntime.errors import (
    BadSignatureError,
    EnvelopeError,
    KeyExpiredError,
    KeyRevokedError,
    SignatureError,
    SpecTooLargeError,
    UnknownKeyError,
)
from jobruntime.signing.dsse import Envelope, MalformedEnvelope, Signature
from jobruntime.signing.roots import CONTROL_PLANE, RoleLike, RootLike
from jobruntime.spec.codec import MAX_SPEC_BYTES, M, load_json, parse_model
from jobruntime.spec.rules import iso

if TYPE_CHECKING:
    from jobruntime.signing.keys import SigningKey

SPEC_TYPE = "application/vnd.jobruntime.spec+json"
APPROVAL_TYPE = "application/vnd.jobruntime.approval+json"
CLAIM_TYPE = "application/vnd.jobruntime.claim+json"
ORDER_TYPE = "application/vnd.jobruntime.order+json"
CHECKPOINT_TYPE = "application/vnd.jobruntime.audit-checkpoint+json"
ENROLMENT_TYPE = "application/vnd.jobruntime.owner-key-enrolment+json"

# Which failure explains a shortfall best: a forged signature beats a key problem,
# which beats a key nobody trusts.
_PRIORITY: tuple[type[SignatureError], ...] = (
    BadSignatureError,
    KeyRevokedError,
    KeyExpiredError,
    UnknownKeyError,
)


def sign(payload: bytes, payload_type: str, keys: Iterable[SigningKey]) -> Envelope:
    env = Envelope(payload, payload_type, {})
    for key in keys:
        sig = key.sign(env.pae())
        env.signatures[key.keyid] = Signature(sig.keyid, sig.signature)
    return env


def to_json(env: Envelope) -> dict[str, Any]:
    return env.to_dict()


def from_json(obj: Any, payload_type: str, what: str) -> Envelope:
    """Shape-check and decode an envelope; the payload is limited like a spec."""
    if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
        raise EnvelopeError(f"{what} is not a DSSE envelope (payload, payloadType, signatures)")
    if obj["payloadType"] != payload_type:
        raise EnvelopeError(f"{what} has payloadType {obj['payloadType']!r}, want {payload_type!r}")
    sigs = obj["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise EnvelopeError(f"{what} carries no signatures")
    if not isinstance(obj["payload"], str):
        raise EnvelopeError(f"{what} payload is not a base64 string")
    if len(obj["payload"]) > MAX_SPEC_BYTES * 4 // 3 + 4:
        raise SpecTooLargeError(f"{what} payload is over the {MAX_SPEC_BYTES}-byte limit")
    try:
        return Envelope.from_dict(obj)
    except MalformedEnvelope as exc:
        raise EnvelopeError(f"{what} {exc}") from None


def from_bytes(data: bytes, payload_type: str, what: str) -> Envelope:
    return from_json(load_json(data, what, MAX_SPEC_BYTES * 2), payload_type, what)


def dumps(env: Envelope) -> str:
    return json.dumps(to_json(env), sort_keys=True)


def verify(
    env: Envelope,
    trust_root: RootLike,
    role: RoleLike,
    role_name: str,
    now: datetime,
    threshold: int | None = None,
) -> frozenset[str]:
    """Return the distinct key ids that validly signed; raise if under threshold.

    ``threshold`` overrides the role's, for callers that count across envelopes.
    """
    needed = role.threshold if threshold is None else threshold
    valid: set[str] = set()
    failures: list[SignatureError] = []
    pae = env.pae()
    for sig in env.signatures.values():
        failure = _check_one(sig.keyid, trust_root, role, role_name, now)
        if failure is None and not trust_root.by_id[sig.keyid].verifies(sig.signature, pae):
            failure = BadSignatureError(
                f"signature by {role_name} key {sig.keyid[:16]}… does not match the payload"
            )
        if failure is None:
            valid.add(sig.keyid)
        else:
            failures.append(failure)
    if len(valid) >= needed:
        return frozenset(valid)
    for kind in _PRIORITY:
        for failure in failures:
            if type(failure) is kind:
                raise failure
    raise SignatureError(f"{role_name}: {len(valid)} of {needed} required distinct keys signed")


def open_signed(
    obj: Any,
    payload_type: str,
    model: type[M],
    what: str,
    trust_root: RootLike,
    now: datetime,
) -> M:
    """A document the control plane signed (claim receipt, order, checkpoint), verify-then-parse:

    1. the envelope's shape and payload type; 2. the control-plane keys' signature over
    the exact payload; 3. only then the payload's strict schema.
    """
    env = from_json(obj, payload_type, what)
    verify(env, trust_root, trust_root.control_plane, CONTROL_PLANE, now)
    return parse_model(model, env.payload, what)


def _check_one(
    keyid: str, trust_root: RootLike, role: RoleLike, role_name: str, now: datetime
) -> SignatureError | None:
    if keyid not in role.distinct:
        return UnknownKeyError(f"signature by key {keyid[:16]}… which is not a {role_name} key")
    key = trust_root.by_id[keyid]
    if key.revoked:
        return KeyRevokedError(f"{role_name} key {keyid[:16]}… is revoked")
    if not key.valid_at(now):
        return KeyExpiredError(
            f"{role_name} key {keyid[:16]}… is valid only from {iso(key.not_before)} "
            f"to {iso(key.not_after)}"
        )
    return None


__all__ = [
    "APPROVAL_TYPE",
    "CHECKPOINT_TYPE",
    "CLAIM_TYPE",
    "ENROLMENT_TYPE",
    "ORDER_TYPE",
    "SPEC_TYPE",
    "Envelope",
    "dumps",
    "from_bytes",
    "from_json",
    "open_signed",
    "sign",
    "to_json",
    "verify",
]
