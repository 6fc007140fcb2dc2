"""Attested sessions: the only way a pod acts for a run.

A session is opened by evidence (``POST /kms/attest``) and names its run, pod,
role and purpose. Claim, key release, dataset reads and publishes, heartbeats and
the run's outcome each take a live session of the right purpose from a pod of that
run; the pods' bearer token only says who is calling and grants none of these.
Every refusal is audited.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jobruntime.attestation.product import Product
from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.attestation.report import AttestationReport
from jobruntime.controlplane.api import EvidenceKind, Purpose, ReleasePolicy, RunState
from jobruntime.emulator.context import ApiError, Context
from jobruntime.errors import ConfigError
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.policy import Appraisal
from jobruntime.signing import approvals
from jobruntime.spec.models import JobRunSpec

ATTEST_POLICIES = "attest-policies.json"
PURPOSES: tuple[Purpose, ...] = ("verifier", "key-agent", "heartbeat")


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


def find(ctx: Context, token: str) -> Session | None:
    rows = ctx.store.read("SELECT * FROM kms_sessions WHERE token_hash = ?", token_hash(token))
    if not rows:
        return None
    r = rows[0]
    return Session(
        run_id=r["run_id"],
        purpose=r["purpose"],
        pod_id=r["pod_id"],
        role=r["role"],
        public_jwk=json.loads(r["public_jwk"]),
        evidence_kind=EvidenceKind(r["evidence_kind"]),
        product=Product(r["product"]),
        report=bytes(r["report"]),
        expires_at=datetime.fromisoformat(r["expires_at"]),
    )


def require(
    ctx: Context,
    token: str | None,
    purposes: Collection[str],
    *,
    now: datetime,
    actor: str,
    event: str,
    run_id: str | None = None,
    **details: str,
) -> Session:
    """A live session of one of ``purposes`` (for ``run_id`` if given), or an audited 403."""
    session = find(ctx, token) if token else None
    fault = None
    if session is None or session.expires_at < now:
        fault = ("kms.session_invalid", "no valid attestation session")
    elif session.purpose not in purposes:
        fault = (
            "kms.session_purpose",
            f"a {session.purpose} session may not do this (needs {', '.join(sorted(purposes))})",
        )
    elif run_id is not None and session.run_id != run_id:
        fault = ("kms.session_run", f"the session is for another run than {run_id}")
    if fault is not None:
        where = session.run_id if session else run_id
        ctx.audit(now, event, where, actor, {"reason": fault[0], **details})
        raise ApiError(403, *fault)
    assert session is not None
    return session


def approvals_fault(ctx: Context, run: Any, spec: JobRunSpec, now: datetime) -> str | None:
    """Defence in depth: why the run's current spec digest lacks its owners' approvals.

    The run's state says "approved", but keys go out only if the approvals stored for
    the run still verify against the exact digest the run now has.
    """
    stored = [json.loads(r["envelope"]) for r in ctx.store.approvals(run["run_id"])]
    tally = approvals.tally(stored, spec, run["spec_digest"], ctx.trust_root, now)
    short = [t.owner for t in tally.owners.values() if not t.met]
    return f"not approved by {', '.join(short)} for {run['spec_digest'][:19]}…" if short else None


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


def attest_policies(state_dir: Path) -> dict[str, ReleasePolicy]:
    """What evidence opens a session, per purpose: the state's file, else the local default.

    The default accepts the emulated TEE's measurement in either isolation mode: the
    emulator serves local work. A deployment names its own in ``attest-policies.json``.
    """
    path = state_dir / ATTEST_POLICIES
    if not path.exists():
        local = ReleasePolicy(
            isolation=["pod", "node"],
            evidence_kinds=list(EvidenceKind),
            measurements=[EMULATED_MEASUREMENT.hex()],
        )
        return {p: local for p in PURPOSES}
    try:
        obj = json.loads(path.read_bytes())
        policies: dict[str, ReleasePolicy] = {
            p: ReleasePolicy.model_validate(obj[p]) for p in PURPOSES
        }
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} must name a release policy for each of {PURPOSES}") from None
    return policies
