"""The emulator's KMS: dataset master keys, and their release to attested pods only.

Protocol (after the Confidential Containers KBS):
1. ``POST /v1/kms/challenge``: a nonce for one run, valid 60 s, usable once.
2. ``POST /v1/kms/attest``: evidence whose REPORT_DATA binds the nonce, the run, the
   pod's ephemeral public key and the purpose; the run must be verified (claimed)
   and not cancelled. Returns a short-lived session: one attestation per pod.
3. ``POST /v1/kms/release``: one dataset key per call, if the dataset is in the run's
   spec and the key's release policy accepts the session's evidence; wrapped as JWE
   to the ephemeral key. Every release and every denial goes into the audit log.

The emulator keeps master keys in its SQLite file: it stands in for a managed HSM,
and that file is the emulator's own state, never a pod's.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from fastapi import FastAPI

from jobruntime.attestation.appraise import appraise
from jobruntime.attestation.certs import ProductChain
from jobruntime.attestation.product import Product
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
from jobruntime.emulator.context import ApiError, Context
from jobruntime.emulator.state import TEE_DIR, Principal
from jobruntime.errors import JobRuntimeError
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import report_data
from jobruntime.keyrelease.policy import check_release
from jobruntime.spec.models import JobRunSpec, utcnow

SESSION_TTL = timedelta(hours=1)


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
            raise refuse(now, "kms.attest_denied", req.run_id, who, *fault)
        # 2. The run was verified (claimed once) and is not cancelled.
        state = RunState(row["state"])
        if state is RunState.CANCELLED:
            raise refuse(
                now,
                "kms.attest_denied",
                req.run_id,
                who,
                409,
                "kms.run_cancelled",
                f"{req.run_id} is cancelled",
            )
        if state is not RunState.CLAIMED:
            raise refuse(
                now,
                "kms.attest_denied",
                req.run_id,
                who,
                409,
                "kms.run_unverified",
                f"{req.run_id} has not been verified ({state.value})",
            )
        # 3. Genuine evidence, bound to this nonce, run, key and purpose, not debug.
        try:
            peer = jwe.public_key(req.public_jwk)
            evidence = Evidence.from_json(req.evidence)
            binding = report_data(req.nonce, req.run_id, jwe.thumbprint(peer), req.purpose)
            verified = appraise(evidence, binding, chains, allow_emulated=allow_emulated)
        except JobRuntimeError as exc:
            raise refuse(
                now, "kms.attest_denied", req.run_id, who, 403, exc.code, exc.message
            ) from None
        kind = EvidenceKind.EMULATED if verified.emulated else EvidenceKind(evidence.kind)
        token = secrets.token_urlsafe(32)
        expires = min(now + SESSION_TTL, spec.validity.expires)
        measurement = verified.report.measurement.hex()
        with store.tx() as db:
            db.execute(
                "INSERT INTO kms_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    hashlib.sha256(token.encode()).hexdigest(),
                    req.run_id,
                    req.purpose,
                    json.dumps(req.public_jwk),
                    kind.value,
                    verified.product.value,
                    evidence.report,
                    expires.isoformat(),
                ),
            )
            store.audit(
                db,
                now,
                "run.attested",
                req.run_id,
                who.name,
                {"purpose": req.purpose, "evidence": kind.value, "measurement": measurement},
            )
        return AttestResponse(
            session=token, expires_at=expires, measurement=measurement, evidence_kind=kind.value
        )

    @app.post(f"{API_PREFIX}/kms/release", tags=["kms"])
    def release(req: ReleaseRequest, who: Principal = pod) -> ReleaseResponse:
        """One dataset key, wrapped to the attested pod's ephemeral key."""
        now = utcnow()
        digest = hashlib.sha256(req.session.encode()).hexdigest()
        rows = store.read("SELECT * FROM kms_sessions WHERE token_hash = ?", digest)
        if not rows or datetime.fromisoformat(rows[0]["expires_at"]) < now:
            ctx.audit(
                now,
                "kms.release_denied",
                None,
                who.name,
                {"reason": "kms.session_invalid", "dataset": req.dataset},
            )
            raise ApiError(403, "kms.session_invalid", "no valid attestation session")
        session = rows[0]
        run_id = session["run_id"]
        row = ctx.load_run(run_id, who)
        spec = JobRunSpec.model_validate_json(row["spec"])
        # 1. The run is still live.
        if RunState(row["state"]) in (RunState.SUCCEEDED, RunState.FAILED):
            raise refuse(
                now,
                "kms.release_denied",
                run_id,
                who,
                409,
                "kms.run_finished",
                f"{run_id} has finished",
                dataset=req.dataset,
            )
        if RunState(row["state"]) is RunState.CANCELLED:
            raise refuse(
                now,
                "kms.release_denied",
                run_id,
                who,
                409,
                "kms.run_cancelled",
                f"{run_id} is cancelled",
                dataset=req.dataset,
            )
        # 2. The dataset is one the signed spec names.
        dataset = spec.dataset(req.dataset)
        if dataset is None:
            raise refuse(
                now,
                "kms.release_denied",
                run_id,
                who,
                403,
                "kms.dataset_not_in_spec",
                f"{req.dataset} is not a dataset of {run_id}",
                dataset=req.dataset,
            )
        keys = store.read("SELECT * FROM kms_keys WHERE key_id = ?", dataset.key_id)
        if not keys:
            raise refuse(
                now,
                "kms.release_denied",
                run_id,
                who,
                404,
                "kms.key_unknown",
                f"no key {dataset.key_id}",
                dataset=req.dataset,
            )
        # 3. The key belongs to the dataset's owner, who had to approve this run.
        if keys[0]["owner"] != dataset.owner:
            raise refuse(
                now,
                "kms.release_denied",
                run_id,
                who,
                403,
                "kms.key_owner",
                f"key {dataset.key_id} is not {dataset.owner}'s",
                dataset=req.dataset,
            )
        # 4. The key's release policy accepts the evidence the session was opened with.
        policy = ReleasePolicy.model_validate_json(keys[0]["policy"])
        report = AttestationReport.parse(bytes(session["report"]))
        try:
            check_release(
                policy, EvidenceKind(session["evidence_kind"]), report, Product(session["product"])
            )
        except JobRuntimeError as exc:
            raise refuse(
                now,
                "kms.release_denied",
                run_id,
                who,
                403,
                exc.code,
                exc.message,
                dataset=req.dataset,
            ) from None
        # 5. Wrapped to the key the evidence bound; the plaintext key never leaves memory.
        wrapped = jwe.wrap(
            bytes(keys[0]["material"]), jwe.public_key(json.loads(session["public_jwk"]))
        )
        ctx.audit(
            now,
            "kms.released",
            run_id,
            who.name,
            {"dataset": req.dataset, "key_id": dataset.key_id, "purpose": session["purpose"]},
        )
        return ReleaseResponse(dataset=req.dataset, key_id=dataset.key_id, jwe=wrapped)
