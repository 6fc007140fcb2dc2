"""The emulator's KMS: dataset master keys, and their release to attested pods only.

Protocol (after the Confidential Containers KBS):
1. ``POST /v1/kms/challenge``: a nonce for one run, valid 60 s, usable once.
2. ``POST /v1/kms/attest``: evidence whose REPORT_DATA binds the nonce, the run, the
   signed spec's digest, the pod's id and role, the purpose and the pod's ephemeral
   public key; its HOST_DATA must be the spec's for that role (pod isolation); the
   purpose's policy must accept it; the pod must belong to the run (the claiming
   driver pod, or an executor pod whose verifier joined it). One session per pod
   and purpose.
3. ``POST /v1/kms/release``: one dataset key per call, to a ``key-agent`` session of
   a running run, if the dataset is in the run's spec and the key's release policy
   accepts the session's evidence and the run's isolation mode; wrapped as JWE to
   the ephemeral key. Every release and every denial goes into the audit log.

The emulator keeps master keys in its SQLite file: it stands in for a managed HSM,
and that file is the emulator's own state, never a pod's.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from fastapi import FastAPI

from jobruntime.attestation.appraise import appraise
from jobruntime.attestation.certs import ProductChain
from jobruntime.attestation.policy import HostDataEquals
from jobruntime.attestation.providers.emulated import load_tee
from jobruntime.attestation.providers.evidence import Evidence
from jobruntime.attestation.report import AttestationReport
from jobruntime.attestation.roots import amd_chains
from jobruntime.controlplane.api import (
    API_PREFIX,
    AttestRequest,
    AttestResponse,
    Challenge,
    ChallengeRequest,
    CreateKeyRequest,
    EvidenceKind,
    KeyInfo,
    OwnerAccessRequest,
    OwnerAccessResponse,
    ReleasePolicy,
    ReleaseRequest,
    ReleaseResponse,
    Role,
    RunState,
)
from jobruntime.emulator import sessions
from jobruntime.emulator.context import ApiError, Context
from jobruntime.emulator.state import TEE_DIR, Principal
from jobruntime.errors import AttestationError, JobRuntimeError
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import Binding
from jobruntime.keyrelease.policy import Appraisal, check_release
from jobruntime.spec.models import JobRunSpec, utcnow

MAX_OPEN_NONCES = 256


def trusted_chains(state_dir: Path) -> tuple[list[ProductChain], bool]:
    """AMD's roots always; the emulated chip's root when this state has one."""
    chains = list(amd_chains())
    tee_dir = state_dir / TEE_DIR
    if tee_dir.exists():
        chains.append(load_tee(tee_dir).chain)
        return chains, True
    return chains, False


def register(app: FastAPI, ctx: Context) -> None:
    store = ctx.store
    # Tests shorten it to see a stale nonce refused.
    nonce_ttl = timedelta(seconds=float(os.environ.get("JOBRUNTIME_KMS_NONCE_TTL", "60")))
    chains, allow_emulated = trusted_chains(ctx.state_dir)
    purpose_policies = sessions.attest_policies(ctx.state_dir)
    owner_or_operator = ctx.dependency(Role.OWNER, Role.OPERATOR)
    owner = ctx.dependency(Role.OWNER)
    pod = ctx.dependency(Role.VERIFIER)

    def key_info(row: dict[str, str]) -> KeyInfo:
        return KeyInfo(
            key_id=row["key_id"],
            owner=row["owner"],
            created_at=row["created_at"],
            release_policy=ReleasePolicy.model_validate_json(row["policy"]),
        )

    @app.post(f"{API_PREFIX}/kms/keys", status_code=201, tags=["kms"])
    def create_key(req: CreateKeyRequest, who: Principal = owner) -> KeyInfo:
        """A new 256-bit dataset master key for the caller's organisation."""
        org = req.key_id.split("/", 1)[0]
        if org != who.org:
            raise ApiError(403, "auth.forbidden", f"{who.name} may not create keys for {org}")
        now = utcnow()
        with store.tx() as db:
            if db.execute("SELECT 1 FROM kms_keys WHERE key_id = ?", (req.key_id,)).fetchone():
                raise ApiError(409, "kms.key_exists", f"key {req.key_id} already exists")
            db.execute(
                "INSERT INTO kms_keys VALUES (?, ?, ?, ?, ?)",
                (
                    req.key_id,
                    org,
                    os.urandom(32),
                    req.release_policy.model_dump_json(),
                    now.isoformat(),
                ),
            )
            store.audit(db, now, "kms.key_created", None, who.name, {"key_id": req.key_id})
        return KeyInfo(
            key_id=req.key_id, owner=org, release_policy=req.release_policy, created_at=now
        )

    @app.get(f"{API_PREFIX}/kms/keys/{{key_id:path}}", tags=["kms"])
    def get_key(key_id: str, who: Principal = owner_or_operator) -> KeyInfo:
        """A key's owner and release policy; never its material."""
        rows = store.read("SELECT * FROM kms_keys WHERE key_id = ?", key_id)
        if not rows:
            raise ApiError(404, "kms.key_unknown", f"no key {key_id}")
        if who.role is Role.OWNER and rows[0]["owner"] != who.org:
            raise ApiError(403, "auth.forbidden", f"{who.name} does not own {key_id}")
        return key_info(dict(rows[0]))

    @app.post(f"{API_PREFIX}/kms/keys/{{key_id:path}}/owner-access", tags=["kms"])
    def owner_access(
        key_id: str, req: OwnerAccessRequest, who: Principal = owner
    ) -> OwnerAccessResponse:
        """An owner's own use of its key (encrypting, decrypting its data): no attestation,
        only the owner's token, wrapped to its ephemeral key, and audited."""
        rows = store.read("SELECT * FROM kms_keys WHERE key_id = ?", key_id)
        if not rows:
            raise ApiError(404, "kms.key_unknown", f"no key {key_id}")
        if rows[0]["owner"] != who.org:
            raise ApiError(403, "auth.forbidden", f"{who.name} does not own {key_id}")
        wrapped = jwe.wrap(bytes(rows[0]["material"]), jwe.public_key(req.public_jwk))
        ctx.audit(utcnow(), "kms.owner_access", None, who.name, {"key_id": key_id})
        return OwnerAccessResponse(key_id=key_id, jwe=wrapped)

    @app.post(f"{API_PREFIX}/kms/challenge", tags=["kms"])
    def challenge(req: ChallengeRequest, who: Principal = pod) -> Challenge:
        ctx.load_run(req.run_id, who)
        now = utcnow()
        nonce = secrets.token_hex(32)
        with store.tx() as db:
            # Expired nonces go; a run has a bounded number outstanding at once.
            db.execute("DELETE FROM kms_nonces WHERE expires_at < ?", (now.isoformat(),))
            (open_,) = db.execute(
                "SELECT COUNT(*) FROM kms_nonces WHERE run_id = ? AND used_at IS NULL",
                (req.run_id,),
            ).fetchone()
            if open_ >= MAX_OPEN_NONCES:
                raise ApiError(
                    429, "kms.too_many_challenges", "too many unused nonces for this run"
                )
            db.execute(
                "INSERT INTO kms_nonces VALUES (?, ?, ?, NULL)",
                (nonce, req.run_id, (now + nonce_ttl).isoformat()),
            )
        return Challenge(nonce=nonce, expires_at=now + nonce_ttl)

    def refuse(
        now: datetime,
        event: str,
        run_id: str,
        who: Principal,
        status: int,
        code: str,
        message: str,
        **details: str,
    ) -> ApiError:
        ctx.audit(now, event, run_id, who.name, {"reason": code, **details})
        return ApiError(status, code, message)

    @app.post(f"{API_PREFIX}/kms/attest", tags=["kms"])
    def attest(req: AttestRequest, who: Principal = pod) -> AttestResponse:
        """Appraise a pod's evidence once; the session it opens carries that appraisal."""
        now = utcnow()
        row = ctx.load_run(req.run_id, who)
        spec = JobRunSpec.model_validate_json(row["spec"])

        def deny(status: int, code: str, message: str) -> ApiError:
            return refuse(
                now,
                "kms.attest_denied",
                req.run_id,
                who,
                status,
                code,
                message,
                purpose=req.purpose,
                role=req.role,
            )

        with store.tx() as db:
            # 1. The nonce is ours, for this run, fresh, and used only now.
            n = db.execute("SELECT * FROM kms_nonces WHERE nonce = ?", (req.nonce,)).fetchone()
            fault = None
            if n is None or n["run_id"] != req.run_id:
                fault = (409, "kms.nonce_unknown", "the nonce was not issued for this run")
            elif n["used_at"] is not None:
                fault = (409, "kms.nonce_reused", "the nonce was already used")
            elif datetime.fromisoformat(n["expires_at"]) < now:
                fault = (409, "kms.nonce_stale", "the nonce has expired")
            else:
                db.execute(
                    "UPDATE kms_nonces SET used_at = ? WHERE nonce = ?",
                    (now.isoformat(), req.nonce),
                )
        if fault:
            raise deny(*fault)
        # 1b. The owners approved exactly the spec the run has now (whatever its state says).
        unapproved = sessions.approvals_fault(ctx, row, spec, now)
        if unapproved and RunState(row["state"]) in (RunState.APPROVED, RunState.CLAIMED):
            raise deny(409, "kms.not_approved", unapproved)
        # 2. Genuine evidence (signature, chain, TCB) whose REPORT_DATA binds this nonce,
        #    run, signed spec, pod, role, purpose and ephemeral key.
        try:
            peer = jwe.public_key(req.public_jwk)
            evidence = Evidence.from_json(req.evidence)
            binding = Binding(
                nonce=req.nonce,
                run_id=req.run_id,
                spec_digest=row["spec_digest"],
                key_thumbprint=jwe.thumbprint(peer),
                purpose=req.purpose,
                pod_id=req.pod_id,
                role=req.role,
            )
            verified = appraise(
                evidence, binding.report_data(), chains, allow_emulated=allow_emulated
            )
            kind = EvidenceKind.EMULATED if verified.emulated else EvidenceKind(evidence.kind)
            # 3. What this purpose's sessions require of the evidence.
            check_release(
                purpose_policies[req.purpose],
                Appraisal(kind, spec.workload.isolation, verified.report, verified.product),
            )
            # 4. In pod isolation, the pod is the one the owners approved for its role.
            check_workload(spec, req.role, verified.report)
        except JobRuntimeError as exc:
            raise deny(403, exc.code, exc.message) from None
        token = secrets.token_urlsafe(32)
        # A session lives as long as the run may: it dies with the run's state (finished,
        # cancelled) long before that, and a pod cannot open a second one.
        expires = spec.validity.expires
        measurement = verified.report.measurement.hex()
        with store.tx() as db:
            # 5. The run's state and this pod's place in it, decided with the insert.
            current = db.execute("SELECT * FROM runs WHERE run_id = ?", (req.run_id,)).fetchone()
            fault = pod_fault(db, current, req.purpose, req.role, req.pod_id)
            if fault is None:
                if req.purpose == "verifier" and req.role == "executor":
                    db.execute(
                        "INSERT OR IGNORE INTO run_pods VALUES (?, ?, ?)",
                        (req.run_id, req.pod_id, req.role),
                    )
                try:
                    db.execute(
                        "INSERT INTO kms_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            sessions.token_hash(token),
                            req.run_id,
                            req.purpose,
                            req.pod_id,
                            req.role,
                            json.dumps(req.public_jwk),
                            kind.value,
                            verified.product.value,
                            evidence.report,
                            expires.isoformat(),
                        ),
                    )
                except sqlite3.IntegrityError:
                    # 6. One session per pod and purpose.
                    fault = (
                        409,
                        "kms.session_exists",
                        f"pod {req.pod_id[:8]}… already has a {req.purpose} session",
                    )
            if fault is None:
                store.audit(
                    db,
                    now,
                    "run.attested",
                    req.run_id,
                    who.name,
                    {
                        "purpose": req.purpose,
                        "role": req.role,
                        "pod": req.pod_id,
                        "evidence": kind.value,
                        "measurement": measurement,
                        "host_data": verified.report.host_data.hex(),
                    },
                )
        if fault is not None:
            raise deny(*fault)
        return AttestResponse(
            session=token, expires_at=expires, measurement=measurement, evidence_kind=kind.value
        )

    @app.post(f"{API_PREFIX}/kms/release", tags=["kms"])
    def release(req: ReleaseRequest, who: Principal = pod) -> ReleaseResponse:
        """One dataset key, wrapped to the attested key agent's ephemeral key."""
        now = utcnow()
        # 1. A live key-agent session: only the key agent of a pod of the run holds keys.
        session = sessions.require(
            ctx,
            req.session,
            ("key-agent",),
            now=now,
            actor=who.name,
            event="kms.release_denied",
            dataset=req.dataset,
        )
        run_id = session.run_id
        row = ctx.load_run(run_id, who)
        spec = JobRunSpec.model_validate_json(row["spec"])

        def deny(status: int, code: str, message: str) -> ApiError:
            return refuse(
                now,
                "kms.release_denied",
                run_id,
                who,
                status,
                code,
                message,
                dataset=req.dataset,
                pod=session.pod_id,
            )

        # 2. The run is running: claimed, not finished, not cancelled.
        state = RunState(row["state"])
        if state is RunState.CANCELLED:
            raise deny(409, "kms.run_cancelled", f"{run_id} is cancelled")
        if state is not RunState.CLAIMED:
            raise deny(409, "kms.run_finished", f"{run_id} is {state.value}, not running")
        unapproved = sessions.approvals_fault(ctx, row, spec, now)
        if unapproved:
            raise deny(409, "kms.not_approved", unapproved)
        # 3. The dataset is one the signed spec names.
        dataset = spec.dataset(req.dataset)
        if dataset is None:
            raise deny(
                403, "kms.dataset_not_in_spec", f"{req.dataset} is not a dataset of {run_id}"
            )
        keys = store.read("SELECT * FROM kms_keys WHERE key_id = ?", dataset.key_id)
        if not keys:
            raise deny(404, "kms.key_unknown", f"no key {dataset.key_id}")
        # 4. The key belongs to the dataset's owner, who had to approve this run.
        if keys[0]["owner"] != dataset.owner:
            raise deny(403, "kms.key_owner", f"key {dataset.key_id} is not {dataset.owner}'s")
        # 5. The key's release policy accepts the session's evidence and the run's isolation.
        policy = ReleasePolicy.model_validate_json(keys[0]["policy"])
        try:
            check_release(policy, session.appraisal(spec))
        except JobRuntimeError as exc:
            raise deny(403, exc.code, exc.message) from None
        # 6. Wrapped to the key the evidence bound; the plaintext key never leaves memory.
        wrapped = jwe.wrap(bytes(keys[0]["material"]), jwe.public_key(session.public_jwk))
        ctx.audit(
            now,
            "kms.released",
            run_id,
            who.name,
            {"dataset": req.dataset, "key_id": dataset.key_id, "pod": session.pod_id},
        )
        return ReleaseResponse(dataset=req.dataset, key_id=dataset.key_id, jwe=wrapped)


def check_workload(spec: JobRunSpec, role: str, report: AttestationReport) -> None:
    """Pod isolation: HOST_DATA is what the signed spec names for this role."""
    workload = spec.workload
    if workload.isolation == "node":
        return
    expected = workload.host_data.get(role)  # type: ignore[call-overload]  # role is checked
    if expected is None:
        raise WorkloadIncompleteError(f"the spec names no HOST_DATA for the {role} role")
    HostDataEquals(bytes.fromhex(expected)).verify(report)


class WorkloadIncompleteError(AttestationError):
    """A pod-isolation spec that does not name every role's HOST_DATA."""

    code = "kms.workload_incomplete"


def pod_fault(
    db: sqlite3.Connection, run: sqlite3.Row, purpose: str, role: str, pod_id: str
) -> tuple[int, str, str] | None:
    """Why this pod may not open this session now, or None. Read inside the insert's tx."""
    state = RunState(run["state"])
    run_id = run["run_id"]
    if purpose == "verifier" and role == "driver":
        # The driver's verifier attests first, then claims with this session: it is
        # refused here with the claim's own codes.
        return sessions.claim_refusal(state, run_id)
    if state is RunState.CANCELLED:
        return (409, "kms.run_cancelled", f"{run_id} is cancelled")
    if state in (RunState.SUCCEEDED, RunState.FAILED):
        return (409, "kms.run_finished", f"{run_id} has finished")
    if state is not RunState.CLAIMED:
        return (409, "kms.run_unverified", f"{run_id} has not been claimed ({state.value})")
    if purpose == "verifier":  # an executor pod joins the claimed run
        return None
    if purpose == "heartbeat" and role != "driver":
        return (403, "kms.pod_role", "only the driver pod sends heartbeats")
    member = db.execute(
        "SELECT role FROM run_pods WHERE run_id = ? AND pod_id = ?", (run_id, pod_id)
    ).fetchone()
    if member is None or member["role"] != role:
        return (403, "kms.pod_not_of_run", f"pod {pod_id[:8]}… is not a {role} pod of {run_id}")
    return None
