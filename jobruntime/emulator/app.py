"""The control-plane emulator: the ``/v1`` API as a FastAPI adapter over the service.

Every decision is made by ``jobruntime.controlplane.service`` (runs, kms,
datasets, heartbeats) over its SQLite repository; this module only maps routes to
those functions, names the roles allowed to call each route (everything else is
401/403) and shapes refusals as the API's error body. Limits before any route runs
are in ``limits.Gate``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobruntime.controlplane.api import (
    API_PREFIX,
    ApprovalRequest,
    ApprovalResponse,
    AttestRequest,
    AttestResponse,
    AuditLog,
    CancelRequest,
    Challenge,
    ChallengeRequest,
    ClaimRequest,
    ClaimResponse,
    CreateKeyRequest,
    DatasetRef,
    DatasetVersion,
    EnrolledKey,
    EnrolOwnerKey,
    Health,
    HeartbeatAck,
    KeyInfo,
    KeyList,
    OwnerAccessRequest,
    OwnerAccessResponse,
    OwnerAuditLog,
    PublishVersion,
    ReleaseRequest,
    ReleaseResponse,
    Role,
    RunList,
    RunStatus,
    SetPolicyRequest,
    SignedHeartbeat,
    SignedRun,
    SparkSecretRequest,
    SparkSecretResponse,
    SubmitResponse,
    VerifierRefusal,
)
from jobruntime.controlplane.service import datasets, heartbeats, kms, owners, runs, servicebus
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError, StateConflictError
from jobruntime.controlplane.service.principals import Principal
from jobruntime.emulator.context import ERRORS, Auth, error_response, load_control_plane
from jobruntime.emulator.limits import Gate
from jobruntime.errors import JobRuntimeError
from jobruntime.spec.models import JobRunRequest, Workload

SERVICEBUS_ENV = "JOBRUNTIME_SERVICEBUS_CONNECTION"


def create_app(state_dir: Path) -> FastAPI:
    cp = load_control_plane(state_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        env = os.environ.get
        heartbeats.watch(
            cp,
            stop,
            factor=float(env("JOBRUNTIME_HEARTBEAT_TIMEOUT_FACTOR", heartbeats.TIMEOUT_FACTOR)),
            summary=timedelta(seconds=float(env("JOBRUNTIME_AUDIT_SUMMARY_SECONDS", "60"))),
        )
        bus = env(SERVICEBUS_ENV)
        if bus:
            servicebus.consume(cp, bus, stop)
        yield
        stop.set()
        cp.repo.close()

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
    app.state.control_plane = cp
    app.add_middleware(Gate, known=cp.known, count=cp.denials.count)
    _handlers(app)
    _routes(app, cp, Auth(cp))
    return app


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (unknown route, unparsable body) in the API's shape.
        return error_response(exc.status_code, f"http.{exc.status_code}", str(exc.detail)[:200])

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
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


def _routes(app: FastAPI, cp: ControlPlane, allow: Auth) -> None:
    anyone = allow(*Role)
    submitter = allow(Role.SUBMITTER)
    reader = allow(Role.SUBMITTER, Role.OWNER, Role.OPERATOR, Role.VERIFIER)
    owner = allow(Role.OWNER)
    pod = allow(Role.VERIFIER)
    canceller = allow(Role.SUBMITTER, Role.OPERATOR)
    operator = allow(Role.OPERATOR)
    renderer = allow(Role.SUBMITTER, Role.OPERATOR)
    owner_or_operator = allow(Role.OWNER, Role.OPERATOR)
    reader_no_pod = allow(Role.SUBMITTER, Role.OWNER, Role.OPERATOR)
    dataset_caller = allow(Role.OWNER, Role.OPERATOR, Role.VERIFIER)
    v1 = API_PREFIX

    @app.get(f"{v1}/health", tags=["meta"])
    def health(who: Principal = anyone) -> Health:
        return Health(status="ok", principal=who.name)

    @app.post(f"{v1}/runs", status_code=201, tags=["runs"])
    def submit(req: JobRunRequest, who: Principal = submitter) -> SubmitResponse:
        """Turn a request into a spec, sign it, and wait for the owners' approvals."""
        return runs.submit(cp, req, who)

    @app.get(f"{v1}/runs", tags=["runs"])
    def list_runs(
        after: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=owners.RUNS_PAGE)] = 50,
        who: Principal = reader_no_pod,
    ) -> RunList:
        """The runs the caller may see, oldest first: a submitter's own, the runs naming an
        owner's organisation, every run for operators; ``next`` is the following page's
        ``after``."""
        return owners.list_runs(cp, after, limit, who)

    @app.get(f"{v1}/runs/{{run_id}}", tags=["runs"])
    def status(run_id: str, who: Principal = reader) -> RunStatus:
        return runs.status(cp, run_id, who)

    @app.get(f"{v1}/runs/{{run_id}}/spec", tags=["runs"])
    def signed_spec(run_id: str, who: Principal = reader) -> SignedRun:
        """The signed spec and every accepted approval, for owners and verifiers to check."""
        return runs.signed_spec(cp, run_id, who)

    @app.post(f"{v1}/runs/{{run_id}}/approvals", tags=["approvals"])
    def approve(run_id: str, req: ApprovalRequest, who: Principal = owner) -> ApprovalResponse:
        """Accept one owner's signature over the exact spec digest.

        Decided inside one transaction on a fresh read of the run: an approval counts
        only for the digest it signs, while the run still waits for approvals, and the
        move to ``approved`` is a compare-and-set, so no concurrent workload change,
        cancel or finish can be undone or slipped under the owner's signature.
        """
        return runs.approve(cp, run_id, req, who)

    @app.post(f"{v1}/runs/{{run_id}}/claim", tags=["runs"])
    def claim(run_id: str, req: ClaimRequest, who: Principal = pod) -> ClaimResponse:
        """Hand the run to exactly one attested driver pod; the same claim id may ask again."""
        return runs.claim(cp, run_id, req, who)

    @app.post(f"{v1}/runs/{{run_id}}/workload", tags=["runs"])
    def workload(run_id: str, req: Workload, who: Principal = renderer) -> SubmitResponse:
        """Name the pods the owners will approve (HOST_DATA per role), and re-sign the spec.

        Only before any approval: the spec digest changes, so owners approve the
        workload with everything else.
        """
        return runs.set_workload(cp, run_id, req, who)

    @app.post(f"{v1}/runs/{{run_id}}/cancel", tags=["runs"])
    def cancel(run_id: str, req: CancelRequest, who: Principal = canceller) -> RunStatus:
        return runs.cancel(cp, run_id, req, who)

    @app.post(f"{v1}/runs/{{run_id}}/refusals", tags=["runs"])
    def refusal(run_id: str, req: VerifierRefusal, who: Principal = pod) -> RunStatus:
        """A pod's verifier reports why it refused the run (informational, not attested)."""
        return runs.record_refusal(cp, run_id, req, who)

    @app.post(f"{v1}/runs/{{run_id}}/heartbeats", tags=["heartbeats"])
    def heartbeat(run_id: str, req: SignedHeartbeat, who: Principal = pod) -> HeartbeatAck:
        """One signed heartbeat; the answer says whether the run is to be cancelled."""
        cp.load_run(run_id, who)
        return heartbeats.accept(cp, req, who.name, run_id)

    @app.get(f"{v1}/audit", tags=["audit"])
    def audit_log(
        after: Annotated[int, Query(ge=0, le=2**53)] = 0,
        limit: Annotated[int, Query(ge=1, le=runs.AUDIT_PAGE)] = runs.AUDIT_PAGE,
        who: Principal = operator,
    ) -> AuditLog:
        """A page of the log (entries after ``after``) and a checkpoint of the whole log,
        signed now: {count, head, time}; ``next`` is where the following page starts."""
        return runs.audit_log(cp, after, limit)

    @app.get(f"{v1}/audit/mine", tags=["audit"])
    def owner_audit(
        after: Annotated[int, Query(ge=0, le=2**53)] = 0,
        limit: Annotated[int, Query(ge=1, le=runs.AUDIT_PAGE)] = runs.AUDIT_PAGE,
        who: Principal = owner,
    ) -> OwnerAuditLog:
        """The entries about the caller's organisation only (its keys, datasets, approvals
        and the runs naming it), filtered here; each entry keeps its own signature."""
        return owners.owner_audit(cp, after, limit, who)

    @app.post(f"{v1}/trust-root/owner-keys", status_code=201, tags=["trust-root"])
    def enrol_owner_key(req: EnrolOwnerKey, who: Principal = owner) -> EnrolledKey:
        """Add an approval key to the caller's own owner role of the trust root (audited;
        the role's threshold is kept; a key already trusted anywhere is refused)."""
        return owners.enrol_key(cp, req, who)

    @app.get(f"{v1}/kms/keys", tags=["kms"])
    def list_keys(who: Principal = owner_or_operator) -> KeyList:
        """An owner's keys (an operator's: all), with their release policies; never material."""
        return kms.list_keys(cp, who)

    @app.put(f"{v1}/kms/keys/{{key_id:path}}/policy", tags=["kms"])
    def set_policy(key_id: str, req: SetPolicyRequest, who: Principal = owner) -> KeyInfo:
        """Replace the release policy of one of the caller's keys (audited). Future releases
        only: a key already released to a running run is not taken back."""
        return kms.set_policy(cp, key_id, req, who)

    @app.post(f"{v1}/kms/keys", status_code=201, tags=["kms"])
    def create_key(req: CreateKeyRequest, who: Principal = owner) -> KeyInfo:
        """A new 256-bit dataset master key for the caller's organisation."""
        return kms.create_key(cp, req, who)

    @app.get(f"{v1}/kms/keys/{{key_id:path}}", tags=["kms"])
    def get_key(key_id: str, who: Principal = owner_or_operator) -> KeyInfo:
        """A key's owner and release policy; never its material."""
        return kms.get_key(cp, key_id, who)

    @app.post(f"{v1}/kms/keys/{{key_id:path}}/owner-access", tags=["kms"])
    def owner_access(
        key_id: str, req: OwnerAccessRequest, who: Principal = owner
    ) -> OwnerAccessResponse:
        """An owner's own use of its key (encrypting, decrypting its data): no attestation,
        only the owner's token, wrapped to its ephemeral key, and audited."""
        return kms.owner_access(cp, key_id, req, who)

    @app.post(f"{v1}/kms/challenge", tags=["kms"])
    def challenge(req: ChallengeRequest, who: Principal = pod) -> Challenge:
        return kms.challenge(cp, req, who)

    @app.post(f"{v1}/kms/attest", tags=["kms"])
    def attest(req: AttestRequest, who: Principal = pod) -> AttestResponse:
        """Appraise a pod's evidence once; the session it opens carries that appraisal."""
        return kms.attest(cp, req, who)

    @app.post(f"{v1}/kms/release", tags=["kms"])
    def release(req: ReleaseRequest, who: Principal = pod) -> ReleaseResponse:
        """One dataset key, wrapped to the attested key agent's ephemeral key."""
        return kms.release(cp, req, who)

    @app.post(f"{v1}/kms/spark-secret", tags=["kms"])
    def spark_secret(req: SparkSecretRequest, who: Principal = pod) -> SparkSecretResponse:
        """The run's Spark authentication secret, wrapped to an attested key agent."""
        return kms.spark_secret(cp, req, who)

    @app.post(f"{v1}/datasets/latest", tags=["datasets"])
    def latest(ref: DatasetRef, who: Principal = dataset_caller) -> DatasetVersion:
        return datasets.latest(cp, ref, who)

    @app.post(f"{v1}/datasets/publish", tags=["datasets"])
    def publish(req: PublishVersion, who: Principal = dataset_caller) -> DatasetVersion:
        """Record a new latest version: exactly one more than the recorded one."""
        return datasets.publish(cp, req, who)
