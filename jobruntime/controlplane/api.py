"""Wire models of the control-plane API (``/v1``), shared by the emulator and the client.

Envelopes travel as their DSSE JSON form (``payload``, ``payloadType``,
``signatures``) and are checked by the receiver, never trusted as parsed objects.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobruntime.controlplane.pod import MAX_OUTPUTS, publish_statement
from jobruntime.controlplane.pod import Purpose as Purpose
from jobruntime.spec.models import Name, RunId, Sha256Hex

API_PREFIX = "/v1"


class Role(StrEnum):
    SUBMITTER = "submitter"
    OWNER = "owner"
    OPERATOR = "operator"
    VERIFIER = "verifier"


class RunState(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Wire):
    code: str
    message: str


class ErrorBody(_Wire):
    error: ErrorDetail


class SubmitResponse(_Wire):
    run_id: RunId
    spec_digest: str
    state: RunState


class Progress(_Wire):
    jobs_done: int = 0
    jobs_total: int = 0
    stages_done: int = 0
    stages_total: int = 0
    tasks_done: int = 0
    tasks_total: int = 0


class VerifierRefusal(_Wire):
    """Why a pod's verifier refused the run: its error code, exit code and step."""

    role: Literal["driver", "executor"]
    code: Annotated[str, Field(pattern=r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$", max_length=64)]
    exit_code: Annotated[int, Field(ge=1, le=125)]
    step: Annotated[int, Field(ge=1, le=10)] | None = None
    at: datetime | None = Field(default=None, description="set by the control plane")


class RunStatus(_Wire):
    run_id: RunId
    job_id: str
    state: RunState
    spec_digest: str
    required_owners: list[str]
    approved_by: dict[str, int] = Field(description="owner -> distinct approving keys")
    created_at: datetime
    claimed_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    finished_at: datetime | None = None
    outcome_reason: str | None = None
    outputs: list[OutputReport] = Field(default_factory=list)
    last_heartbeat_at: datetime | None = None
    progress: Progress | None = None
    refusals: list[VerifierRefusal] = Field(
        default_factory=list,
        description="what the run's verifiers reported before exiting (by the pods' token: "
        "informational, not attested)",
    )


class OutputReport(_Wire):
    dataset: Name
    version: Annotated[int, Field(ge=1)]
    manifest_digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class SignedRun(_Wire):
    """The spec envelope signed by the control plane and the owners' approvals."""

    envelope: dict[str, Any]
    approvals: list[dict[str, Any]]


class ApprovalRequest(_Wire):
    envelope: dict[str, Any]


class ApprovalResponse(_Wire):
    run_id: RunId
    owner: Name
    keyid: Sha256Hex
    state: RunState


class ClaimRequest(_Wire):
    claim_id: Sha256Hex = Field(description="random per verifier; repeating it is idempotent")
    session: str = Field(
        max_length=256, description="the driver pod's attested session of purpose verifier"
    )


class ClaimResponse(_Wire):
    receipt: dict[str, Any] = Field(description="DSSE envelope of a ClaimReceipt")


class CancelRequest(_Wire):
    reason: str = Field(default="cancelled by request", max_length=200)


class AuditEntry(_Wire):
    seq: int
    at: datetime
    event: str
    run_id: str | None
    actor: str
    details: dict[str, Any]
    prev_hash: Sha256Hex
    hash: Sha256Hex
    keyid: Sha256Hex
    sig: str = Field(description="hex signature over the entry's canonical body")


class AuditLog(_Wire):
    entries: list[AuditEntry]
    next: int | None = Field(
        default=None, description="more entries follow: ask again with after=next"
    )
    checkpoint: dict[str, Any] | None = Field(
        default=None,
        description="DSSE envelope of an AuditCheckpoint {count, head, at} signed by the "
        "control plane when it answered: a log cut short no longer matches it",
    )


class OwnerAuditLog(_Wire):
    """The entries that concern the calling owner's organisation, filtered by the service.

    A filtered view cannot be checked against the whole log's checkpoint; each entry
    still carries its own hash and signature (``verify_entry``).
    """

    org: str
    entries: list[AuditEntry]
    next: int | None = Field(
        default=None, description="more entries may follow: ask again with after=next"
    )


class RunSummary(_Wire):
    run_id: RunId
    job_id: str
    state: RunState
    spec_digest: str
    submitter: str
    required_owners: list[str]
    created_at: datetime


class RunList(_Wire):
    runs: list[RunSummary]
    next: str | None = Field(
        default=None, description="more runs follow: ask again with after=next"
    )


class OwnerKeyEnrolment(_Wire):
    """The signed statement: this org adds this approval key (the payload of the envelope)."""

    org: Annotated[str, Field(min_length=1, max_length=64)]
    public_key_pem: Annotated[str, Field(max_length=8192)]
    days: Annotated[int, Field(ge=1, le=3650)] = 365
    at: datetime


class EnrolOwnerKey(_Wire):
    """A DSSE envelope of an ``OwnerKeyEnrolment``, signed by the org's current approval
    keys (its threshold) and by the new key itself (proof of possession)."""

    envelope: dict[str, Any]


class EnrolledKey(_Wire):
    owner: str
    keyid: Sha256Hex
    threshold: int
    keyids: list[str]
    not_after: datetime
    trust_root_digest: str


class Health(_Wire):
    status: str
    principal: str


# --- KMS: dataset master keys and attested release -----------------------------------


class EvidenceKind(StrEnum):
    SEV_SNP = "sev-snp"
    AZURE_VTPM = "azure-vtpm"
    EMULATED = "emulated"


Isolation = Literal["pod", "node"]


class ReleasePolicy(_Wire):
    """When a key may leave the KMS, or a session may open: the evidence it takes.

    Declarative, after go-sev-guest's ``validate.Options``; ``keyrelease.policy.build``
    turns it into small composable policy objects. Defaults are the strict choice.
    """

    isolation: Annotated[list[Isolation], Field(min_length=1)] = Field(
        default_factory=lambda: list[Isolation](["pod"]),
        description="isolation modes accepted; node trusts whoever controls the cluster",
    )
    evidence_kinds: list[EvidenceKind] = Field(
        default_factory=lambda: [EvidenceKind.SEV_SNP, EvidenceKind.AZURE_VTPM],
        description="emulated evidence only where a key's owner says so (local work)",
    )
    measurements: list[Annotated[str, Field(pattern=r"^[0-9a-f]{96}$")]] = Field(
        min_length=1, description="allowed launch measurements (hex SHA-384)"
    )
    minimum_tcb: dict[Literal["bootloader", "tee", "snp", "microcode", "fmc"], int] = Field(
        default_factory=dict
    )
    minimum_guest_svn: Annotated[int, Field(ge=0)] = 0
    vmpls: Annotated[list[Annotated[int, Field(ge=0, le=3)]], Field(min_length=1)] = Field(
        default_factory=lambda: [0], description="privilege levels accepted (0 is the guest OS)"
    )
    allow_migration_agent: bool = False
    allow_smt: bool = True
    require_single_socket: bool = False
    chip_ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]] = Field(
        default_factory=list, description="if not empty, the only chips accepted (hex CHIP_ID)"
    )


class CreateKeyRequest(_Wire):
    key_id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}/[A-Za-z0-9._-]{1,64}$")]
    release_policy: ReleasePolicy


class KeyInfo(_Wire):
    key_id: str
    owner: str
    release_policy: ReleasePolicy
    created_at: datetime


class KeyList(_Wire):
    keys: list[KeyInfo]


class SetPolicyRequest(_Wire):
    release_policy: ReleasePolicy


class ChallengeRequest(_Wire):
    run_id: RunId


class Challenge(_Wire):
    nonce: Sha256Hex
    expires_at: datetime


PodId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class AttestRequest(_Wire):
    """Evidence whose REPORT_DATA binds every field here but ``evidence`` itself."""

    run_id: RunId
    nonce: Sha256Hex
    purpose: Purpose
    pod_id: PodId = Field(description="drawn by the pod's verifier; one per pod")
    role: Literal["driver", "executor"]
    evidence: dict[str, Any]
    public_jwk: dict[str, Any] = Field(description="the pod's ephemeral P-384 public key")


class AttestResponse(_Wire):
    session: str = Field(description="bearer of this attestation for releases; short-lived")
    expires_at: datetime
    measurement: str
    evidence_kind: str


class ReleaseRequest(_Wire):
    session: str
    dataset: Name


class ReleaseResponse(_Wire):
    dataset: str
    key_id: str
    jwe: str = Field(description="compact JWE (ECDH-ES+A256KW, A256GCM) to the session's key")


class SparkSecretRequest(_Wire):
    session: str


class SparkSecretResponse(_Wire):
    run_id: str
    jwe: str = Field(description="compact JWE (ECDH-ES+A256KW, A256GCM) to the session's key")


# --- dataset versions: the control plane's record of each dataset's latest manifest ----


class DatasetRef(_Wire):
    """Which dataset: an owner names its URI; a pod names a dataset of its attested run."""

    uri: str | None = Field(default=None, max_length=2048)
    session: str | None = Field(default=None, max_length=256)
    dataset: Name | None = None


class PublishVersion(DatasetRef):
    key_id: str | None = None
    version: Annotated[int, Field(ge=1)]
    manifest_digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    signature: str | None = Field(
        default=None,
        max_length=4096,
        description="a pod's compact JWS over statement(run_id), by its session's bound key",
    )

    def statement(self, run_id: str) -> bytes:
        """What a pod signs: this version of this dataset, for this run (RFC 8785)."""
        return publish_statement(run_id, self.dataset, self.version, self.manifest_digest)


class DatasetVersion(_Wire):
    uri: str
    key_id: str
    version: int
    manifest_digest: str
    updated_at: datetime


class OwnerAccessRequest(_Wire):
    public_jwk: dict[str, Any] = Field(description="the owner's ephemeral P-384 public key")


class OwnerAccessResponse(_Wire):
    key_id: str
    jwe: str


# --- heartbeats ------------------------------------------------------------------------


class Heartbeat(_Wire):
    run_id: RunId
    seq: Annotated[int, Field(ge=0, le=2**31)]
    at: datetime
    state: Literal["starting", "running", "succeeded", "failed", "cancelled"]
    progress: Progress = Field(default_factory=Progress)
    interval: Annotated[float, Field(gt=0, le=3600)] = 10.0
    final: bool = False
    reason: str | None = Field(default=None, max_length=300, description="a final failure's code")
    outputs: list[OutputReport] = Field(
        default_factory=list,
        max_length=MAX_OUTPUTS,
        description="on the final heartbeat of a success: each output's published version",
    )


class SignedHeartbeat(_Wire):
    """A heartbeat as compact JWS (ES384) by the ephemeral key of the sidecar's attestation."""

    session: str
    jws: Annotated[str, Field(max_length=16384)]


class HeartbeatAck(_Wire):
    accepted: bool
    run_id: str | None = None
    cancel: bool = False
    reason: str | None = None
    order: dict[str, Any] | None = Field(
        default=None,
        description="with cancel: a DSSE envelope of a CancelOrder signed by the control plane;"
        " a sidecar acts on nothing else",
    )
