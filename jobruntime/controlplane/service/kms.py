"""The KMS: dataset master keys, and their release to attested pods only.

Protocol (after the Confidential Containers KBS):
1. ``challenge``: a nonce for one run, valid ``nonce_ttl``, usable once.
2. ``attest``: evidence whose REPORT_DATA binds the nonce, the run, the signed spec's
   digest, the pod's id and role, the purpose and the pod's ephemeral public key; its
   HOST_DATA must be the spec's for that role (pod isolation); the purpose's policy
   must accept it; the pod must belong to the run (the claiming driver pod, or an
   executor pod whose verifier joined it). One session per pod and purpose.
3. ``release``: one dataset key per call, to a ``key-agent`` session of a running
   run, if the dataset is in the run's spec and the key's release policy accepts the
   session's evidence and the run's isolation mode; wrapped as JWE to the ephemeral
   key. Every release and every denial goes into the audit log.

Each decision is parse -> verify -> policy: the request is parsed into typed values,
the evidence is verified (signature and chain before REPORT_DATA), then the policies
decide. Master keys never leave the repository except wrapped to an attested key.
"""

from __future__ import annotations

import json
import os
import secrets

from jobruntime.attestation.appraise import appraise
from jobruntime.attestation.policy import HostDataEquals
from jobruntime.attestation.providers.evidence import Evidence
from jobruntime.attestation.report import AttestationReport
from jobruntime.controlplane.api import (
    AttestRequest,
    AttestResponse,
    Challenge,
    ChallengeRequest,
    CreateKeyRequest,
    EvidenceKind,
    KeyInfo,
    KeyList,
    OwnerAccessRequest,
    OwnerAccessResponse,
    ReleasePolicy,
    ReleaseRequest,
    ReleaseResponse,
    Role,
    RunState,
    SetPolicyRequest,
    SparkSecretRequest,
    SparkSecretResponse,
)
from jobruntime.controlplane.service import sessions
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.controlplane.service.principals import Principal
from jobruntime.controlplane.service.repository import KeyRecord, RunRecord, SessionRecord, Tx
from jobruntime.errors import AttestationError, JobRuntimeError
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import Binding
from jobruntime.keyrelease.policy import Appraisal, check_release
from jobruntime.spec.models import JobRunSpec, utcnow

MAX_OPEN_NONCES = 256
RELEASE_NEED = sessions.Need(purposes=("key-agent",), event="kms.release_denied", running=True)
SECRET_NEED = RELEASE_NEED


def _info(key: KeyRecord) -> KeyInfo:
    return KeyInfo(
        key_id=key.key_id,
        owner=key.owner,
        created_at=key.created_at,
        release_policy=ReleasePolicy.model_validate_json(key.policy),
    )


def _owned_key(cp: ControlPlane, key_id: str, who: Principal) -> KeyRecord:
    with cp.repo.read() as tx:
        key = tx.key(key_id)
    if key is None:
        raise ServiceError(404, "kms.key_unknown", f"no key {key_id}")
    if who.role is Role.OWNER and key.owner != who.org:
        raise ServiceError(403, "auth.forbidden", f"{who.name} does not own {key_id}")
    return key


def create_key(cp: ControlPlane, req: CreateKeyRequest, who: Principal) -> KeyInfo:
    """A new 256-bit dataset master key for the caller's organisation."""
    org = req.key_id.split("/", 1)[0]
    if org != who.org:
        raise ServiceError(403, "auth.forbidden", f"{who.name} may not create keys for {org}")
    now = utcnow()
    key = KeyRecord(
        req.key_id, org, os.urandom(32), req.release_policy.model_dump_json(), now.isoformat()
    )
    with cp.repo.tx() as tx:
        if tx.key(req.key_id) is not None:
            raise ServiceError(409, "kms.key_exists", f"key {req.key_id} already exists")
        tx.insert_key(key)
        tx.audit(now, "kms.key_created", None, who.name, {"key_id": req.key_id})
    return _info(key)


def get_key(cp: ControlPlane, key_id: str, who: Principal) -> KeyInfo:
    """A key's owner and release policy; never its material."""
    return _info(_owned_key(cp, key_id, who))


def list_keys(cp: ControlPlane, who: Principal) -> KeyList:
    """An owner's own keys (an operator's: every key); never their material."""
    with cp.repo.read() as tx:
        keys = tx.keys_of(who.org if who.role is Role.OWNER else None)
    return KeyList(keys=[_info(k) for k in keys])


def set_policy(cp: ControlPlane, key_id: str, req: SetPolicyRequest, who: Principal) -> KeyInfo:
    """Replace a key's release policy: its owner only, audited.

    Decides future releases only: a key already released to a running run's attested key
    agent stays in that pod's memory until the run ends (cancel the run to stop it).
    """
    _owned_key(cp, key_id, who)
    if who.role is not Role.OWNER:
        raise ServiceError(403, "auth.forbidden", f"only the owner changes {key_id}'s policy")
    now = utcnow()
    policy = req.release_policy.model_dump_json()
    with cp.repo.tx() as tx:
        key = tx.key(key_id)
        assert key is not None
        tx.set_key_policy(key_id, policy)
        tx.audit(
            now,
            "kms.policy_changed",
            None,
            who.name,
            {
                "key_id": key_id,
                "evidence_kinds": [k.value for k in req.release_policy.evidence_kinds],
                "isolation": list(req.release_policy.isolation),
                "measurements": len(req.release_policy.measurements),
            },
        )
    return _info(KeyRecord(key.key_id, key.owner, key.material, policy, key.created_at))


def owner_access(
    cp: ControlPlane, key_id: str, req: OwnerAccessRequest, who: Principal
) -> OwnerAccessResponse:
    """An owner's own use of its key (encrypting, decrypting its data): no attestation,
    only the owner's token, wrapped to its ephemeral key, and audited."""
    key = _owned_key(cp, key_id, who)
    wrapped = jwe.wrap(key.material, jwe.public_key(req.public_jwk))
    cp.audit(utcnow(), "kms.owner_access", None, who.name, {"key_id": key_id})
    return OwnerAccessResponse(key_id=key_id, jwe=wrapped)


def challenge(cp: ControlPlane, req: ChallengeRequest, who: Principal) -> Challenge:
    cp.load_run(req.run_id, who)
    now = utcnow()
    nonce = secrets.token_hex(32)
    expires = now + cp.trust.nonce_ttl
    with cp.repo.tx() as tx:
        # Expired nonces go; a run has a bounded number outstanding at once.
        if tx.open_nonces(req.run_id, now) >= MAX_OPEN_NONCES:
            raise ServiceError(
                429, "kms.too_many_challenges", "too many unused nonces for this run"
            )
        tx.insert_nonce(nonce, req.run_id, expires)
    return Challenge(nonce=nonce, expires_at=expires)


def attest(cp: ControlPlane, req: AttestRequest, who: Principal) -> AttestResponse:
    """Appraise a pod's evidence once; the session it opens carries that appraisal."""
    now = utcnow()
    run = cp.load_run(req.run_id, who)
    spec = run.spec

    def deny(status: int, code: str, message: str) -> ServiceError:
        details = {"reason": code, "purpose": req.purpose, "role": req.role}
        cp.audit(now, "kms.attest_denied", req.run_id, who.name, details)
        return ServiceError(status, code, message)

    with cp.repo.tx() as tx:
        # 1. The nonce is ours, for this run, fresh, and used only now.
        n = tx.nonce(req.nonce)
        fault = None
        if n is None or n.run_id != req.run_id:
            fault = (409, "kms.nonce_unknown", "the nonce was not issued for this run")
        elif n.used:
            fault = (409, "kms.nonce_reused", "the nonce was already used")
        elif n.expires_at < now:
            fault = (409, "kms.nonce_stale", "the nonce has expired")
        else:
            tx.use_nonce(req.nonce, now)
    if fault:
        raise deny(*fault)
    # 1b. The owners approved exactly the spec the run has now (whatever its state says).
    unapproved = sessions.approvals_fault(cp, run, now)
    if unapproved and run.state in (RunState.APPROVED, RunState.CLAIMED):
        raise deny(409, "kms.not_approved", unapproved)
    # 2. Genuine evidence (signature, chain, TCB) whose REPORT_DATA binds this nonce,
    #    run, signed spec, pod, role, purpose and ephemeral key.
    try:
        peer = jwe.public_key(req.public_jwk)
        evidence = Evidence.from_json(req.evidence)
        binding = Binding(
            nonce=req.nonce,
            run_id=req.run_id,
            spec_digest=run.spec_digest,
            key_thumbprint=jwe.thumbprint(peer),
            purpose=req.purpose,
            pod_id=req.pod_id,
            role=req.role,
        )
        trust = cp.trust
        verified = appraise(
            evidence, binding.report_data(), trust.chains, allow_emulated=trust.allow_emulated
        )
        kind = EvidenceKind.EMULATED if verified.emulated else EvidenceKind(evidence.kind)
        # 3. What this purpose's sessions require of the evidence.
        check_release(
            trust.purposes[req.purpose],
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
    record = SessionRecord(
        token_hash=sessions.token_hash(token),
        run_id=req.run_id,
        purpose=req.purpose,
        pod_id=req.pod_id,
        role=req.role,
        public_jwk=json.dumps(req.public_jwk),
        evidence_kind=kind.value,
        product=verified.product.value,
        report=evidence.report,
        expires_at=expires.isoformat(),
    )
    with cp.repo.tx() as tx:
        # 5. The run's state and this pod's place in it, decided with the insert.
        current = tx.run(req.run_id)
        assert current is not None
        fault = pod_fault(tx, current, req.purpose, req.role, req.pod_id)
        if fault is None:
            if req.purpose == "verifier" and req.role == "executor":
                tx.add_pod(req.run_id, req.pod_id, req.role)
            if not tx.insert_session(record):
                # 6. One session per pod and purpose.
                fault = (
                    409,
                    "kms.session_exists",
                    f"pod {req.pod_id[:8]}… already has a {req.purpose} session",
                )
        if fault is None:
            tx.audit(
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


def release(cp: ControlPlane, req: ReleaseRequest, who: Principal) -> ReleaseResponse:
    """One dataset key, wrapped to the attested key agent's ephemeral key."""
    now = utcnow()
    # 1. A live key-agent session of a running run: only a pod's key agent holds keys.
    session, run = sessions.require(
        cp, req.session, RELEASE_NEED, now=now, actor=who.name, dataset=req.dataset
    )
    spec = run.spec

    def deny(status: int, code: str, message: str) -> ServiceError:
        details = {"reason": code, "dataset": req.dataset, "pod": session.pod_id}
        cp.audit(now, "kms.release_denied", run.run_id, who.name, details)
        return ServiceError(status, code, message)

    # 2. The owners approved exactly the spec the run has now.
    unapproved = sessions.approvals_fault(cp, run, now)
    if unapproved:
        raise deny(409, "kms.not_approved", unapproved)
    # 3. The dataset is one the signed spec names.
    dataset = spec.dataset(req.dataset)
    if dataset is None:
        raise deny(
            403, "kms.dataset_not_in_spec", f"{req.dataset} is not a dataset of {run.run_id}"
        )
    with cp.repo.read() as tx:
        key = tx.key(dataset.key_id)
    if key is None:
        raise deny(404, "kms.key_unknown", f"no key {dataset.key_id}")
    # 4. The key belongs to the dataset's owner, who had to approve this run.
    if key.owner != dataset.owner:
        raise deny(403, "kms.key_owner", f"key {dataset.key_id} is not {dataset.owner}'s")
    # 5. The key's release policy accepts the session's evidence and the run's isolation.
    try:
        check_release(ReleasePolicy.model_validate_json(key.policy), session.appraisal(spec))
    except JobRuntimeError as exc:
        raise deny(403, exc.code, exc.message) from None
    # 6. Wrapped to the key the evidence bound; the plaintext key never leaves memory.
    wrapped = jwe.wrap(key.material, jwe.public_key(session.public_jwk))
    cp.audit(
        now,
        "kms.released",
        run.run_id,
        who.name,
        {"dataset": req.dataset, "key_id": dataset.key_id, "pod": session.pod_id},
    )
    return ReleaseResponse(dataset=req.dataset, key_id=dataset.key_id, jwe=wrapped)


def spark_secret(cp: ControlPlane, req: SparkSecretRequest, who: Principal) -> SparkSecretResponse:
    """The run's Spark authentication secret, wrapped to an attested key agent.

    One secret per run, made here on first request, released like a dataset key: only
    to a key-agent session of a pod of the running run (driver and executors get the
    same value), so Spark's RPC between the run's pods authenticates with a secret
    no one outside them holds; never in a pod spec, an environment or a log.
    """
    now = utcnow()
    # 1. A live key-agent session of a running run (the claiming driver or a joined executor).
    session, run = sessions.require(
        cp, req.session, SECRET_NEED, now=now, actor=who.name, dataset="(spark secret)"
    )
    # 2. The owners approved exactly the spec the run has now.
    unapproved = sessions.approvals_fault(cp, run, now)
    if unapproved:
        details = {"reason": "kms.not_approved", "dataset": "(spark secret)", "pod": session.pod_id}
        cp.audit(now, "kms.release_denied", run.run_id, who.name, details)
        raise ServiceError(409, "kms.not_approved", unapproved)
    # 3. Made once per run, in the same transaction as the audit entry.
    with cp.repo.tx() as tx:
        secret = tx.run_secret(run.run_id, secrets.token_bytes(32))
        tx.audit(
            now,
            "kms.spark_secret_released",
            run.run_id,
            who.name,
            {"pod": session.pod_id, "role": session.role},
        )
    wrapped = jwe.wrap(secret, jwe.public_key(session.public_jwk))
    return SparkSecretResponse(run_id=run.run_id, jwe=wrapped)


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
    tx: Tx, run: RunRecord, purpose: str, role: str, pod_id: str
) -> tuple[int, str, str] | None:
    """Why this pod may not open this session now, or None. Read inside the insert's tx."""
    if purpose == "verifier" and role == "driver":
        # The driver's verifier attests first, then claims with this session: it is
        # refused here with the claim's own codes.
        return sessions.claim_refusal(run.state, run.run_id)
    fault = sessions.running_fault(run)
    if fault is not None:
        return fault
    if purpose == "verifier":  # an executor pod joins the claimed run
        return None
    if purpose == "heartbeat" and role != "driver":
        return (403, "kms.pod_role", "only the driver pod sends heartbeats")
    if tx.pod_role(run.run_id, pod_id) != role:
        return (
            403,
            "kms.pod_not_of_run",
            f"pod {pod_id[:8]}… is not a {role} pod of {run.run_id}",
        )
    return None
