"""Attested sessions: the only way a pod acts for a run.

A session is opened by evidence (``kms.attest``) and names its run, pod, role and
purpose. Claim, key release, dataset reads and publishes, heartbeats and the run's
outcome each take a live session of the right purpose from a pod of that run; the
pods' bearer token only says who is calling and grants none of these. ``require``
is the one check, and every refusal it makes is audited.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobruntime.attestation.product import Product
from jobruntime.attestation.report import AttestationReport
from jobruntime.controlplane.api import EvidenceKind, RunState
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.controlplane.service.repository import RunRecord, SessionRecord
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.policy import Appraisal
from jobruntime.signing import approvals
from jobruntime.spec.models import JobRunSpec

ROLES = ("driver", "executor")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    run_id: str
    purpose: str
    pod_id: str
    role: str
    public_jwk: dict[str, Any]
    evidence_kind: EvidenceKind
    product: Product
    report: bytes
    expires_at: datetime

    @classmethod
    def of(cls, r: SessionRecord) -> Session:
        return cls(
            run_id=r.run_id,
            purpose=r.purpose,
            pod_id=r.pod_id,
            role=r.role,
            public_jwk=json.loads(r.public_jwk),
            evidence_kind=EvidenceKind(r.evidence_kind),
            product=Product(r.product),
            report=r.report,
            expires_at=datetime.fromisoformat(r.expires_at),
        )

    def appraisal(self, spec: JobRunSpec) -> Appraisal:
        return Appraisal(
            kind=self.evidence_kind,
            isolation=spec.workload.isolation,
            report=AttestationReport.parse(self.report),
            product=self.product,
        )

    def verify(self, compact: str) -> bytes:
        """The payload of a JWS by the ephemeral key this session's evidence bound."""
        return jwe.verify(jwe.public_key(self.public_jwk), compact)


@dataclass(frozen=True)
class Need:
    """What an operation asks of the caller's session.

    ``event`` names the audit entry a refusal writes; ``code``, if set, replaces the
    session codes (an operation with its own error vocabulary, like heartbeats).
    """

    purposes: Collection[str]
    event: str
    roles: Collection[str] = ROLES
    running: bool = False
    code: str | None = None


def require(
    cp: ControlPlane,
    token: str | None,
    need: Need,
    *,
    now: datetime,
    actor: str,
    run_id: str | None = None,
    **details: str,
) -> tuple[Session, RunRecord]:
    """A live session that meets ``need``, and its run; or an audited 403/409.

    1. The token names a session that has not expired.
    2. Of one of the purposes asked for, from a pod of an allowed role.
    3. For ``run_id`` when the caller names one.
    4. If ``need.running``: the run is claimed and neither finished nor cancelled.
    """
    found = None
    if token:
        with cp.repo.read() as tx:
            found = tx.session(token_hash(token))
    session = Session.of(found) if found else None
    fault: tuple[int, str, str] | None = None
    if session is None or session.expires_at < now:
        fault = (403, "kms.session_invalid", "no valid attestation session")
    elif session.purpose not in need.purposes:
        fault = (
            403,
            "kms.session_purpose",
            f"a {session.purpose} session may not do this"
            f" (needs {', '.join(sorted(need.purposes))})",
        )
    elif session.role not in need.roles:
        fault = (403, "kms.pod_role", f"a {session.role} pod may not do this")
    elif run_id is not None and session.run_id != run_id:
        fault = (403, "kms.session_run", f"the session is for another run than {run_id}")
    if fault is not None and need.code is not None:
        fault = (403, need.code, fault[2])
    run = None
    if fault is None:
        assert session is not None
        with cp.repo.read() as tx:
            run = tx.run(session.run_id)
        assert run is not None  # sessions are only ever opened for stored runs
        if need.running:
            fault = running_fault(run)
    if fault is not None:
        where = session.run_id if session else run_id
        cp.audit(now, need.event, where, actor, {"reason": fault[1], **details})
        raise ServiceError(*fault)
    assert session is not None and run is not None
    return session, run


def running_fault(run: RunRecord) -> tuple[int, str, str] | None:
    """Why a pod may not act for ``run`` now: it is not claimed, or it ended."""
    if run.state is RunState.CLAIMED:
        return None
    if run.state is RunState.CANCELLED:
        return (409, "kms.run_cancelled", f"{run.run_id} is cancelled")
    if run.state in (RunState.SUCCEEDED, RunState.FAILED):
        return (409, "kms.run_finished", f"{run.run_id} is {run.state.value}, not running")
    return (409, "kms.run_unverified", f"{run.run_id} has not been claimed ({run.state.value})")


def approvals_fault(cp: ControlPlane, run: RunRecord, now: datetime) -> str | None:
    """Defence in depth: why the run's current spec digest lacks its owners' approvals.

    The run's state says "approved", but keys go out only if the approvals stored for
    the run still verify against the exact digest the run now has.
    """
    with cp.repo.read() as tx:
        stored = tx.approvals(run.run_id)
    tally = approvals.tally(stored, run.spec, run.spec_digest, cp.trust_root, now)
    short = [t.owner for t in tally.owners.values() if not t.met]
    return f"not approved by {', '.join(short)} for {run.spec_digest[:19]}…" if short else None


def claim_refusal(state: RunState, run_id: str) -> tuple[int, str, str] | None:
    """Why a driver pod may not claim a run in ``state`` (at attest time and at the claim)."""
    if state is RunState.APPROVED:
        return None
    return {
        RunState.CANCELLED: (409, "claim.cancelled", f"{run_id} is cancelled"),
        RunState.PENDING_APPROVAL: (
            409,
            "claim.not_approved",
            f"{run_id} is still waiting for approvals",
        ),
    }.get(state, (409, "claim.replayed", f"{run_id} was already claimed"))
