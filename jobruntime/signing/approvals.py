"""Data-owner approvals: one owner's signature over one exact spec digest.

Shared by the control plane (which accepts approvals as they arrive), the verifier
and the pod's sidecars (which recount them against their pinned trust root), so an
approval's payload is checked as plain JSON (``spec.plain``): no pydantic. Thresholds
count distinct keys, so an owner who approves twice with one key counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from jobruntime.errors import (
    ApprovalError,
    ApprovalThresholdError,
    JobRuntimeError,
    UnknownKeyError,
)
from jobruntime.signing import envelope
from jobruntime.signing.roots import RootLike
from jobruntime.spec.codec import canonical
from jobruntime.spec.plain import parse_approval

if TYPE_CHECKING:
    from jobruntime.signing.keys import SigningKey
    from jobruntime.spec.models import JobRunSpec

MAX_SIGNATURES = 16  # an owner's threshold is at most 16 distinct keys
MAX_PAYLOAD = 4096  # {run_id, spec_digest, owner, approved_at} is a few hundred bytes


class _Policy(Protocol):
    @property
    def required_owners(self) -> Sequence[str]: ...

    @property
    def threshold(self) -> int: ...


class ApprovedSpec(Protocol):
    """What approvals are counted against: a ``JobRunSpec`` or a ``plain.PlainSpec``."""

    @property
    def run_id(self) -> str: ...

    @property
    def approval_policy(self) -> _Policy: ...


@dataclass
class OwnerTally:
    owner: str
    needed: int
    keyids: set[str] = field(default_factory=set)

    @property
    def met(self) -> bool:
        return len(self.keyids) >= self.needed


@dataclass
class Tally:
    owners: dict[str, OwnerTally]
    rejected: list[str] = field(default_factory=list)

    def require_threshold(self) -> None:
        """Raise naming every owner still short of its threshold."""
        short = [t for t in self.owners.values() if not t.met]
        if not short:
            return
        parts = [
            f"{t.owner} has {len(t.keyids)} of {t.needed} distinct approving keys" for t in short
        ]
        if self.rejected:
            parts.append(f"rejected approvals: {', '.join(sorted(set(self.rejected)))}")
        raise ApprovalThresholdError("; ".join(parts))


def sign_approval(
    spec: JobRunSpec, spec_digest: str, owner: str, key: SigningKey, now: datetime
) -> dict[str, Any]:
    from jobruntime.spec.models import Approval

    approval = Approval(run_id=spec.run_id, spec_digest=spec_digest, owner=owner, approved_at=now)
    return envelope.to_json(envelope.sign(canonical(approval), envelope.APPROVAL_TYPE, [key]))


def check_approval(
    obj: Any, spec: ApprovedSpec, spec_digest: str, trust_root: RootLike, now: datetime
) -> tuple[str, frozenset[str]]:
    """Return (owner, distinct valid key ids) of one approval, or raise why not.

    Verify, then parse: the signing keys say which owner this is, their signature
    is checked over the exact payload, and only then are the payload's fields read.
    """
    # 1. The envelope's shape, and limits checked before any signature is verified.
    env = envelope.from_json(obj, envelope.APPROVAL_TYPE, "approval")
    if len(env.signatures) > MAX_SIGNATURES or len(env.payload) > MAX_PAYLOAD:
        raise ApprovalError(
            f"approval is over the limits ({MAX_SIGNATURES} signatures, {MAX_PAYLOAD} bytes)"
        )
    # 2. Whose keys signed it: exactly one owner's.
    owners = {trust_root.owner_of(s.keyid) for s in env.signatures.values()}
    if None in owners and len(owners) == 1:
        raise UnknownKeyError("approval signed by a key that belongs to no owner")
    owners.discard(None)
    if len(owners) != 1:
        raise ApprovalError("approval is signed by the keys of more than one owner")
    owner = str(owners.pop())
    role = trust_root.owners[owner]
    # 3. The signature (each approval needs one good one; thresholds count across them).
    keyids = envelope.verify(env, trust_root, role, f"owner {owner}", now, threshold=1)
    # 4. Only now the fields: this owner, this run, this exact spec.
    approval = parse_approval(env.payload)
    if approval.owner != owner:
        raise ApprovalError(f"approval names {approval.owner} but is signed by {owner}")
    if approval.run_id != spec.run_id or approval.spec_digest != spec_digest:
        raise ApprovalError(f"approval by {owner} is for another spec or run")
    if owner not in spec.approval_policy.required_owners:
        raise ApprovalError(f"{owner} is not an owner this run needs")
    return owner, keyids


def needed(spec: ApprovedSpec, trust_root: RootLike, owner: str) -> int:
    role = trust_root.owners.get(owner)
    return max(spec.approval_policy.threshold, role.threshold if role else 1)


def tally(
    approvals: Iterable[Any],
    spec: ApprovedSpec,
    spec_digest: str,
    trust_root: RootLike,
    now: datetime,
) -> Tally:
    result = Tally(
        {
            o: OwnerTally(o, needed(spec, trust_root, o))
            for o in spec.approval_policy.required_owners
        }
    )
    for obj in approvals:
        try:
            owner, keyids = check_approval(obj, spec, spec_digest, trust_root, now)
        except JobRuntimeError as exc:
            result.rejected.append(exc.code)
            continue
        result.owners[owner].keyids |= keyids
    return result
