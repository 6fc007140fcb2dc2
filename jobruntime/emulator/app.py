"""The control-plane emulator: the ``/v1`` API as a FastAPI app over SQLite.

It plays the real control plane for local work and tests: it signs specs with its
own key, collects owner approvals, hands out one-time claims and keeps the audit
log. Every route names the roles allowed to call it; everything else is 401/403.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobruntime.controlplane import audit
from jobruntime.controlplane.api import (
    API_PREFIX,
    ApprovalRequest,
    ApprovalResponse,
    AuditLog,
    CancelRequest,
    ClaimRequest,
    ClaimResponse,
    Health,
    OutputReport,
    Progress,
    Role,
    RunState,
    RunStatus,
    SignedRun,
    SubmitResponse,
)
from jobruntime.emulator import datasets, heartbeats, kms, sessions
from jobruntime.emulator.context import ERRORS, ApiError, Context, error_response
from jobruntime.emulator.limits import Gate
from jobruntime.emulator.state import Principal, token_digest
from jobruntime.emulator.store import StateConflictError
from jobruntime.errors import JobRuntimeError
from jobruntime.signing import approvals, envelope
from jobruntime.spec.codec import canonical, sha256_digest
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


def create_app(state_dir: Path) -> FastAPI:
    ctx = Context.load(state_dir)
    key, trust_root, store = ctx.key, ctx.trust_root, ctx.store
    load_run = ctx.load_run

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        heartbeats.watch(ctx, stop)
        bus = os.environ.get(heartbeats.SERVICEBUS_ENV)
        if bus:
            heartbeats.consume_servicebus(ctx, bus, stop)
        yield
        stop.set()
        store.close()

    app = FastAPI(
        title="Confidential Spark control plane",
        version="1.0.0",
        description="Job runs, owner approvals, one-time claims and the signed audit log.",
        lifespan=lifespan,
        responses=ERRORS,
        # No unauthenticated routes: the document is committed as docs/openapi.json.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.add_middleware(
        Gate,
        known=lambda token: token_digest(token) in ctx.tokens,
        count=ctx.denials.count,
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (unknown route, unparsable body) in the API's shape.
        return error_response(exc.status_code, f"http.{exc.status_code}", str(exc.detail)[:200])

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StateConflictError)
    async def _conflict(_: Request, exc: StateConflictError) -> JSONResponse:
        return error_response(409, "run.state_conflict", str(exc))

    @app.exception_handler(JobRuntimeError)
    async def _runtime_error(_: Request, exc: JobRuntimeError) -> JSONResponse:
        return error_response(400, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Field paths only: request bodies may hold values that must not be echoed.
        where = "; ".join(
            ".".join(str(p) for p in e.get("loc", ())) + f": {e.get('msg', '')}"
            for e in exc.errors()[:3]
        )
        return error_response(422, "request.invalid", f"request does not match the schema: {where}")

    def status_of(row: sqlite3.Row) -> RunStatus:
        spec = JobRunSpec.model_validate_json(row["spec"])
        found = store.read("SELECT * FROM liveness WHERE run_id = ?", row["run_id"])
        live = found[0] if found else None
        counts: dict[str, int] = {o: 0 for o in spec.approval_policy.required_owners}
        for a in store.approvals(row["run_id"]):
            counts[a["owner"]] = counts.get(a["owner"], 0) + 1
        return RunStatus(
            run_id=row["run_id"],
            job_id=spec.job_id,
            state=RunState(row["state"]),
            spec_digest=row["spec_digest"],
            required_owners=spec.approval_policy.required_owners,
            approved_by=counts,
            created_at=row["created_at"],
            claimed_at=row["claimed_at"],
            cancelled_at=row["cancelled_at"],
            cancel_reason=row["cancel_reason"],
            finished_at=row["finished_at"],
            outcome_reason=row["outcome_reason"],
            outputs=[OutputReport.model_validate(o) for o in json.loads(row["outputs"] or "[]")],
            last_heartbeat_at=live["last_at"] if live else None,
            progress=Progress.model_validate_json(live["progress"]) if live else None,
        )

    Any_ = ctx.dependency(*Role)
    Submitter = ctx.dependency(Role.SUBMITTER)
    Reader = ctx.dependency(Role.SUBMITTER, Role.OWNER, Role.OPERATOR, Role.VERIFIER)
    Owner = ctx.dependency(Role.OWNER)
    Verifier = ctx.dependency(Role.VERIFIER)
    Canceller = ctx.dependency(Role.SUBMITTER, Role.OPERATOR)
    Operator = ctx.dependency(Role.OPERATOR)
    Renderer = ctx.dependency(Role.SUBMITTER, Role.OPERATOR)

    @app.get(f"{API_PREFIX}/health", tags=["meta"])
    def health(who: Principal = Any_) -> Health:
        return Health(status="ok", principal=who.name)

    @app.post(f"{API_PREFIX}/runs", status_code=201, tags=["runs"])
    def submit(req: JobRunRequest, who: Principal = Submitter) -> SubmitResponse:
        """Turn a request into a spec, sign it, and wait for the owners' approvals."""
        now = utcnow()
        window = req.validity or ValidityWindow(
            not_before=now, expires=now + timedelta(seconds=req.valid_for_seconds)
        )
        if window.expires <= now:
            raise ApiError(400, "request.invalid", "the validity window has already ended")
        if window.expires - now > MAX_VALIDITY:
            raise ApiError(
                400, "request.invalid", f"a run is valid for at most {MAX_VALIDITY.days} days"
            )
        owners = sorted({d.owner for d in (*req.inputs, *req.outputs)})
        if req.approval_policy is None and not owners:
            raise ApiError(400, "request.invalid", "a run must name at least one dataset owner")
        body = req.model_dump(exclude={"validity", "valid_for_seconds", "approval_policy"})
        spec = JobRunSpec.model_validate(
            {
                **body,
                "run_id": f"run-{uuid.uuid4()}",
                "nonce": secrets.token_hex(32),
                "validity": window,
                "approval_policy": req.approval_policy or ApprovalPolicy(required_owners=owners),
            }
        )
        payload = canonical(spec)
        digest = sha256_digest(payload)
        signed = envelope.dumps(envelope.sign(payload, envelope.SPEC_TYPE, [key]))
        with store.tx() as db:
            db.execute(
                "INSERT INTO runs (run_id, submitter, spec, envelope, spec_digest, state,"
                " created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.run_id,
                    who.name,
                    payload.decode(),
                    signed,
                    digest,
                    RunState.PENDING_APPROVAL.value,
                    now.isoformat(),
                ),
            )
            store.audit(
                db,
                now,
                "run.submitted",
                spec.run_id,
                who.name,
                {"spec_digest": digest, "job_id": spec.job_id, "module_sha256": spec.module.sha256},
            )
        return SubmitResponse(
            run_id=spec.run_id, spec_digest=digest, state=RunState.PENDING_APPROVAL
        )

    @app.get(f"{API_PREFIX}/runs/{{run_id}}", tags=["runs"])
    def status(run_id: str, who: Principal = Reader) -> RunStatus:
        return status_of(load_run(run_id, who))

    @app.get(f"{API_PREFIX}/runs/{{run_id}}/spec", tags=["runs"])
    def signed_spec(run_id: str, who: Principal = Reader) -> SignedRun:
        """The signed spec and every accepted approval, for owners and verifiers to check."""
        row = load_run(run_id, who)
        return SignedRun(
            envelope=json.loads(row["envelope"]),
            approvals=[json.loads(a["envelope"]) for a in store.approvals(run_id)],
        )

    @app.post(f"{API_PREFIX}/runs/{{run_id}}/approvals", tags=["approvals"])
    def approve(run_id: str, req: ApprovalRequest, who: Principal = Owner) -> ApprovalResponse:
        """Accept one owner's signature over the exact spec digest.

        Decided inside one transaction on a fresh read of the run: an approval counts
        only for the digest it signs, while the run still waits for approvals, and the
        move to ``approved`` is a compare-and-set, so no concurrent workload change,
        cancel or finish can be undone or slipped under the owner's signature.
        """
        now = utcnow()
        load_run(run_id, who)
        refusal: tuple[int, str, str] | None = None
        with store.tx() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            spec = JobRunSpec.model_validate_json(row["spec"])
            # 1. A valid signature by one owner over this run's current digest.
            try:
                owner, keyids = approvals.check_approval(
                    req.envelope, spec, row["spec_digest"], trust_root, now
                )
            except JobRuntimeError as exc:
                rejected: JobRuntimeError | None = exc
            else:
                rejected = None
            state = RunState(row["state"])
            # 2. The caller is that owner; the run still takes approvals; its pods are named.
            if rejected is not None:
                store.audit(
                    db, now, "approval.rejected", run_id, who.name, {"reason": rejected.code}
                )
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
                    db.execute(
                        "INSERT OR IGNORE INTO approvals VALUES (?, ?, ?, ?)",
                        (run_id, keyid, owner, json.dumps(req.envelope, sort_keys=True)),
                    )
                store.audit(
                    db,
                    now,
                    "run.approved",
                    run_id,
                    who.name,
                    {"owner": owner, "keyids": sorted(keyids), "spec_digest": row["spec_digest"]},
                )
                # 3. Counted against the same row: approvals of an older digest do not count.
                rows = db.execute("SELECT envelope FROM approvals WHERE run_id = ?", (run_id,))
                tally = approvals.tally(
                    [json.loads(r["envelope"]) for r in rows],
                    spec,
                    row["spec_digest"],
                    trust_root,
                    now,
                )
                if state is RunState.PENDING_APPROVAL and all(t.met for t in tally.owners.values()):
                    state = RunState.APPROVED
                    store.set_state(db, run_id, state, expect=[RunState.PENDING_APPROVAL])
                    store.audit(db, now, "run.fully_approved", run_id, "control-plane", {})
        if refusal is not None:
            raise ApiError(*refusal)
        return ApprovalResponse(run_id=run_id, owner=owner, keyid=sorted(keyids)[0], state=state)

    @app.post(f"{API_PREFIX}/runs/{{run_id}}/claim", tags=["runs"])
    def claim(run_id: str, req: ClaimRequest, who: Principal = Verifier) -> ClaimResponse:
        """Hand the run to exactly one attested driver pod; the same claim id may ask again."""
        now = utcnow()
        load_run(run_id, who)
        # 1. An attested driver pod's verifier session for this run: a token alone is not enough.
        session = sessions.require(
            ctx,
            req.session,
            ("verifier",),
            now=now,
            actor=who.name,
            event="claim.denied",
            run_id=run_id,
        )
        if session.role != "driver":
            ctx.audit(now, "claim.denied", run_id, who.name, {"reason": "claim.not_driver"})
            raise ApiError(403, "claim.not_driver", "only a driver pod's verifier claims a run")
        with store.tx() as db:
            # 2. Decide and record in one transaction, so concurrent claims serialise.
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            state = RunState(row["state"])
            if (
                state is RunState.CLAIMED
                and row["claim_id"] == req.claim_id
                and row["claim_pod"] == session.pod_id
            ):
                return ClaimResponse(receipt=json.loads(row["claim_receipt"]))
            refusal = sessions.claim_refusal(state, run_id)
            if refusal is not None:
                store.audit(db, now, "claim.denied", run_id, who.name, {"reason": refusal[1]})
            else:
                receipt = ClaimReceipt(
                    run_id=run_id,
                    spec_digest=row["spec_digest"],
                    claim_id=req.claim_id,
                    claimed_at=now,
                )
                signed = envelope.to_json(
                    envelope.sign(canonical(receipt), envelope.CLAIM_TYPE, [key])
                )
                store.set_state(
                    db,
                    run_id,
                    RunState.CLAIMED,
                    expect=[RunState.APPROVED],
                    claim_id=req.claim_id,
                    claimed_at=now.isoformat(),
                    claim_receipt=json.dumps(signed),
                    claim_pod=session.pod_id,
                )
                db.execute(
                    "INSERT INTO run_pods VALUES (?, ?, ?)", (run_id, session.pod_id, "driver")
                )
                store.audit(
                    db,
                    now,
                    "run.claimed",
                    run_id,
                    who.name,
                    {"claim_id": req.claim_id, "pod": session.pod_id},
                )
        if refusal is not None:
            raise ApiError(*refusal)
        return ClaimResponse(receipt=signed)

    @app.post(f"{API_PREFIX}/runs/{{run_id}}/workload", tags=["runs"])
    def workload(run_id: str, req: Workload, who: Principal = Renderer) -> SubmitResponse:
        """Name the pods the owners will approve (HOST_DATA per role), and re-sign the spec.

        Only before any approval: the spec digest changes, so owners approve the
        workload with everything else.
        """
        now = utcnow()
        row = load_run(run_id, who)
        spec = JobRunSpec.model_validate_json(row["spec"]).model_copy(update={"workload": req})
        spec = JobRunSpec.model_validate(spec.model_dump())  # re-validated as a whole
        payload = canonical(spec)
        digest = sha256_digest(payload)
        signed = envelope.dumps(envelope.sign(payload, envelope.SPEC_TYPE, [key]))
        with store.tx() as db:
            # Compare-and-set on the digest read above, while nothing is approved yet: an
            # approval (or another workload) in between makes this a conflict, never a swap.
            cur = db.execute(
                "UPDATE runs SET spec = ?, envelope = ?, spec_digest = ? WHERE run_id = ?"
                " AND state = ? AND spec_digest = ?"
                " AND NOT EXISTS (SELECT 1 FROM approvals WHERE run_id = ?)",
                (
                    payload.decode(),
                    signed,
                    digest,
                    run_id,
                    RunState.PENDING_APPROVAL.value,
                    row["spec_digest"],
                    run_id,
                ),
            )
            if cur.rowcount != 1:
                raise ApiError(
                    409, "run.approval_started", f"{run_id} already has approvals or moved on"
                )
            store.audit(
                db,
                now,
                "run.workload",
                run_id,
                who.name,
                {
                    "spec_digest": digest,
                    "isolation": req.isolation,
                    "host_data": dict(req.host_data),
                },
            )
        return SubmitResponse(run_id=run_id, spec_digest=digest, state=RunState.PENDING_APPROVAL)

    @app.post(f"{API_PREFIX}/runs/{{run_id}}/cancel", tags=["runs"])
    def cancel(run_id: str, req: CancelRequest, who: Principal = Canceller) -> RunStatus:
        now = utcnow()
        load_run(run_id, who)
        refusal: tuple[int, str, str] | None = None
        with store.tx() as db:
            # Decided on a fresh read in the same transaction as the write.
            state = RunState(
                db.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
            )
            if state in (RunState.SUCCEEDED, RunState.FAILED):
                refusal = (409, "run.finished", f"{run_id} has already finished")
            elif state is not RunState.CANCELLED:
                store.set_state(
                    db,
                    run_id,
                    RunState.CANCELLED,
                    expect=[state],
                    cancelled_at=now.isoformat(),
                    cancel_reason=req.reason,
                )
                store.audit(db, now, "run.cancelled", run_id, who.name, {"reason": req.reason})
        if refusal is not None:
            raise ApiError(*refusal)
        return status_of(load_run(run_id, who))

    @app.get(f"{API_PREFIX}/audit", tags=["audit"])
    def audit_log(
        after: Annotated[int, Query(ge=0, le=2**53)] = 0,
        limit: Annotated[int, Query(ge=1, le=AUDIT_PAGE)] = AUDIT_PAGE,
        who: Principal = Operator,
    ) -> AuditLog:
        """A page of the log (entries after ``after``) and a checkpoint of the whole log,
        signed now: {count, head, time}; ``next`` is where the following page starts."""
        page, count, head = store.audit_page(after, limit)
        more = bool(page) and page[-1].seq < count
        return AuditLog(
            entries=page,
            checkpoint=audit.sign_checkpoint(count, head, key, utcnow()),
            next=page[-1].seq if more else None,
        )

    kms.register(app, ctx)
    datasets.register(app, ctx)
    heartbeats.register(app, ctx)
    return app
