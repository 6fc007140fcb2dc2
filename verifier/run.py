"""Verify one run end to end and write its bundle; nothing is written on failure.

Steps 1-6 verify the signed spec (``jobruntime.verification.signed``), 7-8 check the
pod against it, 9 attests (evidence bound to the run, the spec, this pod and its
role), and 10 claims the run with that attested session (driver) or checks that
the driver's pod claimed it (executor). Local checks run before the control plane
is asked for anything irreversible, so a misconfigured pod does not use up the run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from jobruntime.attestation.providers.choose import provider_for
from jobruntime.controlplane.api import RunState
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.errors import ClaimError, JobRuntimeError, RunCancelledError
from jobruntime.keyrelease.session import AttestedSession, PodIdentity, new_pod_id
from jobruntime.signing import envelope
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import ClaimReceipt, utcnow
from jobruntime.verification.bundle import BundleFile, Receipt, write_atomically
from jobruntime.verification.local import ImageDigest, ModuleDigest
from jobruntime.verification.pinned import JOBS_ROOT
from jobruntime.verification.signed import VerifiedSpec, verify_response
from verifier import __version__


@dataclass(frozen=True)
class VerifierConfig:
    run_id: str
    control_plane_url: str
    token: str = field(repr=False)
    trust_root: Path
    module_path: Path | None
    image_digest: str
    output_dir: Path
    termination_log: Path = Path("/dev/termination-log")
    ca_bundle: Path | None = None
    clock_skew: timedelta = timedelta(seconds=60)
    deadline: float = 60.0
    mode: Literal["driver", "executor"] = "driver"
    tee: str = "auto"
    emulated_tee_dir: Path | None = None

    def module_for(self, verified: VerifiedSpec) -> Path:
        """The job module's file: the dev override, else the image's fixed directory."""
        if self.module_path is not None:
            return self.module_path
        return JOBS_ROOT.joinpath(*verified.spec.module.import_name.split(".")).with_suffix(".py")


class AttestationStep(Protocol):
    """Step 9: an attested ``verifier`` session for this pod (the claim then uses it)."""

    def __call__(
        self, client: ControlPlaneClient, pod: PodIdentity
    ) -> tuple[AttestedSession, dict[str, Any]]: ...


def evidence_attestation(config: VerifierConfig) -> AttestationStep:
    provider = provider_for(config.tee, config.emulated_tee_dir)

    def attest(
        client: ControlPlaneClient, pod: PodIdentity
    ) -> tuple[AttestedSession, dict[str, Any]]:
        session = AttestedSession(client, pod, provider, purpose="verifier")
        answer = session.attest()
        record = {
            "evidence_kind": answer.evidence_kind,
            "measurement": answer.measurement,
            "recorded_until": answer.expires_at.isoformat(),
        }
        return session, record

    return attest


def verify_run(
    config: VerifierConfig,
    *,
    client: ControlPlaneClient | None = None,
    attestation: AttestationStep | None = None,
    now: datetime | None = None,
) -> Path:
    trust_root = TrustRoot.load(config.trust_root)
    now = now or utcnow()
    owned = client is None
    client = client or ControlPlaneClient(
        config.control_plane_url,
        config.token,
        ca_bundle=config.ca_bundle,
        retry_for=config.deadline,
    )
    try:
        body = client.signed_run_bytes(config.run_id)
        # 1.-6. Envelope, signature, schema, approvals, validity, run id.
        verified = verify_response(
            body, trust_root, now=now, run_id=config.run_id, skew=config.clock_skew
        )
        done = list(verified.checks)
        # 7.-8. The module and the image this pod runs are the ones the spec pins.
        module = config.module_for(verified)
        for check in (ModuleDigest(module), ImageDigest(config.image_digest)):
            check.verify(verified)
            done.append(check.name)
        if config.mode == "executor":
            require_claimed(client, config.run_id)
        # 9. Evidence bound to (nonce, run, spec digest, this pod, its role, purpose, key).
        pod = PodIdentity(config.run_id, verified.digest, new_pod_id(), config.mode)
        session, attested = (attestation or evidence_attestation(config))(client, pod)
        done.append("9. attestation")
        if config.mode == "driver":
            # 10. One-time claim, with the attested session: signed by the control plane.
            claim_id = secrets.token_hex(32)
            receipt = client.claim(config.run_id, claim_id, session.token)
            check_claim_receipt(receipt, verified, claim_id, trust_root, now)
            done.append("10. one-time claim")
        else:
            receipt = {}
            done.append("10. run claimed by the driver's pod")
    finally:
        if owned:
            client.close()
    bundle = BundleFile(
        envelope=envelope.to_json(verified.envelope),
        approvals=list(verified.approvals),
        receipt=Receipt(
            run_id=verified.spec.run_id,
            spec_digest=verified.digest,
            pod_id=pod.pod_id,
            role=pod.role,
            verified_at=now,
            verifier_version=__version__,
            trust_root_digest=trust_root.digest,
            module_path=str(module),
            module_sha256=verified.spec.module.sha256,
            image_digest=verified.spec.image_digest,
            checks=done,
            claim=receipt,
            attestation=attested,
        ),
    )
    return write_atomically(config.output_dir, bundle)


def require_claimed(client: ControlPlaneClient, run_id: str) -> None:
    state = client.status(run_id).state
    if state is RunState.CANCELLED:
        raise RunCancelledError(f"{run_id} is cancelled")
    if state is not RunState.CLAIMED:
        raise ClaimError(f"{run_id} is {state.value}: the driver's verifier has not claimed it")


def check_claim_receipt(
    obj: dict[str, Any], verified: VerifiedSpec, claim_id: str, trust_root: TrustRoot, now: datetime
) -> None:
    """The claim answer must be signed by the control plane and name this claim."""
    try:
        receipt = envelope.open_signed(
            obj, envelope.CLAIM_TYPE, ClaimReceipt, "claim receipt", trust_root, now
        )
    except JobRuntimeError as exc:
        raise ClaimError(f"claim receipt rejected: {exc.one_line()}") from None
    if (receipt.run_id, receipt.spec_digest, receipt.claim_id) != (
        verified.spec.run_id,
        verified.digest,
        claim_id,
    ):
        raise ClaimError("claim receipt is for another run, spec or claim")
