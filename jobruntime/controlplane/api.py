"""Wire models of the control-plane API (``/v1``), shared by the emulator and the client.

Envelopes travel as their DSSE JSON form (``payload``, ``payloadType``,
``signatures``) and are checked by the receiver, never trusted as parsed objects.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class Health(_Wire):
    status: str
    principal: str
