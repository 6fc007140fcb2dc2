"""The run state machine: submit, name the workload, approve, claim, cancel, read.

pending_approval -> approved -> claimed -> succeeded | failed, and cancelled from
any state before a finish. Each transition is decided inside one transaction on a
fresh read and written as a compare-and-set (``Tx.set_state``): a state only moves
forward, and of two racing requests exactly one wins. Finishing a run is the
heartbeat's job (``heartbeats``), the only place a pod reports an outcome.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from jobruntime.controlplane import audit
from jobruntime.controlplane.api import (
    ApprovalRequest,
    ApprovalResponse,
    AuditLog,
    CancelRequest,
    ClaimRequest,
    ClaimResponse,
    OutputReport,
    Progress,
    RunState,
    RunStatus,
    SignedRun,
    SubmitResponse,
    VerifierRefusal,
)
from jobruntime.controlplane.service import datasets, sessions
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.controlplane.service.principals import Principal
from jobruntime.controlplane.service.repository import RunRecord
from jobruntime.errors import JobRuntimeError
from jobruntime.signing import approvals, envelope
from jobruntime.spec.codec import canonical, describe, sha256_digest
from jobruntime.spec.models import (
    ApprovalPolicy,
    ClaimReceipt,
    JobRunRequest,
    JobRunSpec,
    ValidityWindow,
    Workload,
    utcnow,
)

MAX_VALIDITY = timedelta(days=31)
AUDIT_PAGE = 1000
CLAIM_NEED = sessions.Need(purposes=("verifier",), event="claim.denied")


def submit(cp: ControlPlane, req: JobRunRequest, who: Principal) -> SubmitResponse:
    """Turn a request into a spec, sign it, and wait for the owners' approvals."""
    now = utcnow()
    window = req.validity or ValidityWindow(
        not_before=now, expires=now + timedelta(seconds=req.valid_for_seconds)
    )
    if window.expires <= now:
        raise ServiceError(400, "request.invalid", "the validity window has already ended")
    if window.expires - now > MAX_VALIDITY:
        raise ServiceError(
            400, "request.invalid", f"a run is valid for at most {MAX_VALIDITY.days} days"
        )
    owners = sorted({d.owner for d in (*req.inputs, *req.outputs)})
    if req.approval_policy is None and not owners:
        raise ServiceError(400, "request.invalid", "a run must name at least one dataset owner")
    body = req.model_dump(exclude={"validity", "valid_for_seconds", "approval_policy"})
    try:  # the spec's cross-field rules (an approval policy missing a dataset's owner)
        spec = JobRunSpec.model_validate(
            {
                **body,
                "run_id": f"run-{uuid.uuid4()}",
                "nonce": secrets.token_hex(32),
                "validity": window,
                "approval_policy": req.approval_policy or ApprovalPolicy(required_owners=owners),
            }
        )
    except ValidationError as exc:
        raise ServiceError(400, "request.invalid", f"no valid spec: {describe(exc)}") from None
    payload = canonical(spec)
    digest = sha256_digest(payload)
    signed = envelope.dumps(envelope.sign(payload, envelope.SPEC_TYPE, [cp.key]))
    run = RunRecord(
        run_id=spec.run_id,
        submitter=who.name,
        spec_json=payload.decode(),
        envelope=signed,
        spec_digest=digest,
        state=RunState.PENDING_APPROVAL,
        created_at=now.isoformat(),
        **dict.fromkeys(_LATER, None),
    )
    with cp.repo.tx() as tx:
        tx.insert_run(run)
        tx.audit(
            now,
            "run.submitted",
            spec.run_id,
            who.name,
            {"spec_digest": digest, "job_id": spec.job_id, "module_sha256": spec.module.sha256},
        )
    return SubmitResponse(run_id=spec.run_id, spec_digest=digest, state=RunState.PENDING_APPROVAL)


_LATER = (
    "claim_id",
    "claimed_at",
    "claim_receipt",
    "claim_pod",
    "cancelled_at",
    "cancel_reason",
    "finished_at",
    "outcome_reason",
    "outputs",
)


def status(cp: ControlPlane, run_id: str, who: Principal) -> RunStatus:
    run = cp.load_run(run_id, who)
    spec = run.spec
    with cp.repo.read() as tx:
        live = tx.liveness(run_id)
        refusals = [VerifierRefusal.model_validate_json(r) for r in tx.refusals(run_id)]
        approvers = tx.approvers(run_id)
    counts: dict[str, int] = {o: 0 for o in spec.approval_policy.required_owners}
    for owner in approvers:
        counts[owner] = counts.get(owner, 0) + 1
    return RunStatus(
        run_id=run.run_id,
        job_id=spec.job_id,
        state=run.state,
        spec_digest=run.spec_digest,
        required_owners=spec.approval_policy.required_owners,
        approved_by=counts,
        created_at=run.created_at,
        claimed_at=run.claimed_at,
        cancelled_at=run.cancelled_at,
        cancel_reason=run.cancel_reason,
        finished_at=run.finished_at,
        outcome_reason=run.outcome_reason,
        outputs=[OutputReport.model_validate(o) for o in json.loads(run.outputs or "[]")],
        last_heartbeat_at=live.last_at if live else None,
        progress=Progress.model_validate_json(live.progress) if live else None,
        refusals=refusals,
    )


MAX_REFUSALS = 16


def record_refusal(
    cp: ControlPlane, run_id: str, req: VerifierRefusal, who: Principal
) -> RunStatus:
    """A pod's verifier says why it refused the run, so the operator sees it.

    Informational: it comes with the pods' bearer token, not an attested session, so it
    changes nothing about the run, holds only a code, an exit code and a step (no
    caller-chosen text), and a run keeps at most ``MAX_REFUSALS`` of them.
    """
    now = utcnow()
    cp.load_run(run_id, who)
    refusal = req.model_copy(update={"at": now})
    with cp.repo.tx() as tx:
        held = len(tx.refusals(run_id))
        if held >= MAX_REFUSALS:
            raise ServiceError(
                429, "run.too_many_refusals", f"{run_id} already holds {held} refusals"
            )
        tx.add_refusal(run_id, held + 1, refusal.model_dump_json())
        tx.audit(
            now,
            "verifier.refused",
            run_id,
            who.name,
            {"role": req.role, "code": req.code, "exit_code": req.exit_code, "step": req.step},
        )
    return status(cp, run_id, who)


def signed_spec(cp: ControlPlane, run_id: str, who: Principal) -> SignedRun:
    """The signed spec and every accepted approval, for owners and verifiers to check."""
    run = cp.load_run(run_id, who)
    with cp.repo.read() as tx:
        stored = tx.approvals(run_id)
    return SignedRun(envelope=json.loads(run.envelope), approvals=stored)


def approve(
    cp: ControlPlane, run_id: str, req: ApprovalRequest, who: Principal
) -> ApprovalResponse:
    """Accept one owner's signature over the exact spec digest.

    Decided inside one transaction on a fresh read of the run: an approval counts
    only for the digest it signs, while the run still waits for approvals, and the
    move to ``approved`` is a compare-and-set, so no concurrent workload change,
    cancel or finish can be undone or slipped under the owner's signature.
    """
    now = utcnow()
    cp.load_run(run_id, who)
    try:
        return _approve(cp, run_id, req, who, now)
    except _Undo as undo:
        cp.audit(now, "approval.rejected", run_id, who.name, {"reason": undo.code})
        raise ServiceError(undo.status, undo.code, undo.message) from None


class _Undo(ServiceError):
    """A refusal found late in a transaction: raised inside it, so it rolls back."""


def _approve(
    cp: ControlPlane, run_id: str, req: ApprovalRequest, who: Principal, now: datetime
) -> ApprovalResponse:
    refusal: tuple[int, str, str] | None = None
    with cp.repo.tx() as tx:
        run = tx.run(run_id)
        assert run is not None
        spec = run.spec
        # 1. A valid signature by one owner over this run's current digest.
        try:
            owner, keyids = approvals.check_approval(
                req.envelope, spec, run.spec_digest, cp.trust_root, now
            )
        except JobRuntimeError as exc:
            rejected: JobRuntimeError | None = exc
        else:
            rejected = None
        state = run.state
        # 2. The caller is that owner; the run still takes approvals; its pods are named.
        if rejected is not None:
            tx.audit(now, "approval.rejected", run_id, who.name, {"reason": rejected.code})
            refusal = (400, rejected.code, rejected.message)
        elif owner != who.org:
            refusal = (403, "auth.forbidden", f"{who.name} may not approve for {owner}")
        elif state is not RunState.PENDING_APPROVAL:
            refusal = (409, f"run.{state.value}", f"{run_id} is {state.value}")
        elif not spec.workload.complete:
            refusal = (
                409,
                "run.workload_pending",
                f"{run_id} does not name its pods' HOST_DATA yet: nothing to approve",
            )
        if refusal is None:
            for keyid in sorted(keyids):
                tx.add_approval(run_id, keyid, owner, req.envelope)
            tx.audit(
                now,
                "run.approved",
                run_id,
                who.name,
                {"owner": owner, "keyids": sorted(keyids), "spec_digest": run.spec_digest},
            )
            # 3. Counted against the same row: approvals of an older digest do not count.
            tally = approvals.tally(tx.approvals(run_id), spec, run.spec_digest, cp.trust_root, now)
            if all(t.met for t in tally.owners.values()):
                # 4. Approved outputs reserve their URIs for their owners: an output at
                #    another organisation's URI undoes this approval (the tx rolls back).
                squatted = datasets.reserve_outputs(tx, spec)
                if squatted is not None:
                    raise _Undo(409, "dataset.owned_by_other", squatted)
                state = RunState.APPROVED
                tx.set_state(run_id, state, expect=[RunState.PENDING_APPROVAL])
                tx.audit(now, "run.fully_approved", run_id, "control-plane", {})
    if refusal is not None:
        raise ServiceError(*refusal)
    return ApprovalResponse(run_id=run_id, owner=owner, keyid=sorted(keyids)[0], state=state)


def claim(cp: ControlPlane, run_id: str, req: ClaimRequest, who: Principal) -> ClaimResponse:
    """Hand the run to exactly one attested driver pod; the same claim id may ask again."""
    now = utcnow()
    cp.load_run(run_id, who)
    # 1. An attested driver pod's verifier session for this run: a token alone is not enough.
    session, _ = sessions.require(
        cp, req.session, CLAIM_NEED, now=now, actor=who.name, run_id=run_id
    )
    if session.role != "driver":
        cp.audit(now, "claim.denied", run_id, who.name, {"reason": "claim.not_driver"})
        raise ServiceError(403, "claim.not_driver", "only a driver pod's verifier claims a run")
    refusal: tuple[int, str, str] | None = None
    with cp.repo.tx() as tx:
        # 2. Decide and record in one transaction, so concurrent claims serialise.
        run = tx.run(run_id)
        assert run is not None
        if (
            run.state is RunState.CLAIMED
            and run.claim_id == req.claim_id
            and run.claim_pod == session.pod_id
            and run.claim_receipt is not None
        ):
            receipt: dict[str, Any] = json.loads(run.claim_receipt)
            return ClaimResponse(receipt=receipt)
        refusal = sessions.claim_refusal(run.state, run_id)
        if refusal is not None:
            tx.audit(now, "claim.denied", run_id, who.name, {"reason": refusal[1]})
        else:
            claimed = ClaimReceipt(
                run_id=run_id, spec_digest=run.spec_digest, claim_id=req.claim_id, claimed_at=now
            )
            receipt = envelope.to_json(
                envelope.sign(canonical(claimed), envelope.CLAIM_TYPE, [cp.key])
            )
            tx.set_state(
                run_id,
                RunState.CLAIMED,
                expect=[RunState.APPROVED],
                claim_id=req.claim_id,
                claimed_at=now.isoformat(),
                claim_receipt=json.dumps(receipt),
                claim_pod=session.pod_id,
            )
            tx.add_pod(run_id, session.pod_id, "driver")
            tx.audit(
                now,
                "run.claimed",
                run_id,
                who.name,
                {"claim_id": req.claim_id, "pod": session.pod_id},
            )
    if refusal is not None:
        raise ServiceError(*refusal)
    return ClaimResponse(receipt=receipt)


def set_workload(cp: ControlPlane, run_id: str, req: Workload, who: Principal) -> SubmitResponse:
    """Name the pods the owners will approve (HOST_DATA per role), and re-sign the spec.

    Only before any approval: the spec digest changes, so owners approve the
    workload with everything else.
    """
    now = utcnow()
    run = cp.load_run(run_id, who)
    spec = run.spec.model_copy(update={"workload": req})
    spec = JobRunSpec.model_validate(spec.model_dump())  # re-validated as a whole
    payload = canonical(spec)
    digest = sha256_digest(payload)
    signed = envelope.dumps(envelope.sign(payload, envelope.SPEC_TYPE, [cp.key]))
    with cp.repo.tx() as tx:
        # Compare-and-set on the digest read above, while nothing is approved yet: an
        # approval (or another workload) in between makes this a conflict, never a swap.
        if not tx.replace_spec(
            run_id, payload.decode(), signed, digest, expect_digest=run.spec_digest
        ):
            raise ServiceError(
                409, "run.approval_started", f"{run_id} already has approvals or moved on"
            )
        tx.audit(
            now,
            "run.workload",
            run_id,
            who.name,
            {"spec_digest": digest, "isolation": req.isolation, "host_data": dict(req.host_data)},
        )
    return SubmitResponse(run_id=run_id, spec_digest=digest, state=RunState.PENDING_APPROVAL)


def cancel(cp: ControlPlane, run_id: str, req: CancelRequest, who: Principal) -> RunStatus:
    now = utcnow()
    cp.load_run(run_id, who)
    refusal: tuple[int, str, str] | None = None
    with cp.repo.tx() as tx:
        # Decided on a fresh read in the same transaction as the write.
        run = tx.run(run_id)
        assert run is not None
        if run.state in (RunState.SUCCEEDED, RunState.FAILED):
            refusal = (409, "run.finished", f"{run_id} has already finished")
        elif run.state is not RunState.CANCELLED:
            tx.set_state(
                run_id,
                RunState.CANCELLED,
                expect=[run.state],
                cancelled_at=now.isoformat(),
                cancel_reason=req.reason,
            )
            tx.audit(now, "run.cancelled", run_id, who.name, {"reason": req.reason})
    if refusal is not None:
        raise ServiceError(*refusal)
    return status(cp, run_id, who)


def audit_log(cp: ControlPlane, after: int, limit: int) -> AuditLog:
    """A page of the log (entries after ``after``) and a checkpoint of the whole log,
    signed now: {count, head, time}; ``next`` is where the following page starts."""
    with cp.repo.read() as tx:
        page, count, head = tx.audit_page(after, min(limit, AUDIT_PAGE))
    more = bool(page) and page[-1].seq < count
    return AuditLog(
        entries=page,
        checkpoint=audit.sign_checkpoint(count, head, cp.key, utcnow()),
        next=page[-1].seq if more else None,
    )
