"""Verify one run end to end and write its bundle; nothing is written on failure.

Steps 1-7 are local checks (``verifier.checks``), run before step 8 so that a
misconfigured pod fails without using up the run's one-time claim.
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
from jobruntime.signing import envelope
from jobruntime.signing.trustroot import CONTROL_PLANE, TrustRoot
from jobruntime.spec.bundle import Receipt, VerifiedBundle, write_atomically
from jobruntime.spec.checks import (
    AllOf,
    ControlPlaneSignature,
    ImageDigest,
    ModuleDigest,
    OwnerApprovals,
    RunIdentity,
    Subject,
    ValidityWindow,
    decode,
)
from jobruntime.spec.codec import parse_model
from jobruntime.spec.models import ClaimReceipt, utcnow
from verifier import __version__
from verifier.attest import EvidenceAttestation


@dataclass(frozen=True)
class VerifierConfig:
    run_id: str
    control_plane_url: str
    token: str = field(repr=False)
    trust_root: Path
    module_path: Path
    image_digest: str
    output_dir: Path
    termination_log: Path = Path("/dev/termination-log")
    ca_bundle: Path | None = None
    clock_skew: timedelta = timedelta(seconds=60)
    deadline: float = 60.0
    mode: Literal["driver", "executor"] = "driver"
    tee: str = "auto"
    emulated_tee_dir: Path | None = None


class AttestationStep(Protocol):
    """Step 9: evidence bound to this run, sent to the control plane.

    It gets the verified subject and the control-plane client and returns a record
    for the bundle's receipt. ``verifier.attest.EvidenceAttestation`` is the default.
    """

    def attest(self, subject: Subject, client: ControlPlaneClient) -> dict[str, Any]: ...


def verify_run(
    config: VerifierConfig,
    *,
    client: ControlPlaneClient | None = None,
    attestation: AttestationStep | None = None,
    now: datetime | None = None,
) -> Path:
    trust_root = TrustRoot.load(config.trust_root)
    owned = client is None
    client = client or ControlPlaneClient(
        config.control_plane_url,
        config.token,
        ca_bundle=config.ca_bundle,
        retry_for=config.deadline,
    )
    try:
        body = client.signed_run_bytes(config.run_id)
        # 1. Envelope and schema.
        subject = decode(body, now or utcnow())
        # 2.-7. Signature, approvals, validity, run id, module and image digests.
        done = ["1. envelope and schema"]
        done += AllOf(
            (
                ControlPlaneSignature(trust_root),
                OwnerApprovals(trust_root),
                ValidityWindow(config.clock_skew),
                RunIdentity(config.run_id),
                ModuleDigest(config.module_path),
                ImageDigest(config.image_digest),
            )
        ).verify(subject)
        if config.mode == "driver":
            # 8. One-time claim: the control plane hands this run out once, and signs that.
            claim_id = secrets.token_hex(32)
            receipt = client.claim(config.run_id, claim_id)
            check_claim_receipt(receipt, subject, claim_id, trust_root)
            done.append("8. one-time claim")
        else:
            # 8. Executor: the driver's verifier claimed the run, and it is still live.
            receipt = {}
            require_claimed(client, config.run_id)
            done.append("8. run claimed by the driver")
        # 9. Attestation evidence bound to the run, recorded by the control plane.
        step = attestation or EvidenceAttestation(provider_for(config.tee, config.emulated_tee_dir))
        attested = step.attest(subject, client)
        done.append("9. attestation")
    finally:
        if owned:
            client.close()
    bundle = VerifiedBundle(
        spec=subject.spec,
        envelope=envelope.to_json(subject.envelope),
        approvals=subject.approvals,
        receipt=Receipt(
            run_id=subject.spec.run_id,
            spec_digest=subject.spec_digest,
            verified_at=subject.now,
            verifier_version=__version__,
            trust_root_digest=trust_root.digest,
            module_path=str(config.module_path),
            module_sha256=subject.spec.module.sha256,
            image_digest=subject.spec.image_digest,
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
    obj: dict[str, Any], subject: Subject, claim_id: str, trust_root: TrustRoot
) -> None:
    """The claim answer must be signed by the control plane and name this claim."""
    try:
        env = envelope.from_json(obj, envelope.CLAIM_TYPE, "claim receipt")
        envelope.verify(env, trust_root, trust_root.control_plane, CONTROL_PLANE, subject.now)
        receipt = parse_model(ClaimReceipt, env.payload, "claim receipt")
    except JobRuntimeError as exc:
        raise ClaimError(f"claim receipt rejected: {exc.one_line()}") from None
    if (receipt.run_id, receipt.spec_digest, receipt.claim_id) != (
        subject.spec.run_id,
        subject.spec_digest,
        claim_id,
    ):
        raise ClaimError("claim receipt is for another run, spec or claim")
