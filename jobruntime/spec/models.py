"""The job-run spec: what a control plane signs and data owners approve.

Every model forbids unknown fields, so a field an attacker adds is an error rather
than something silently ignored. Times are UTC and serialised with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from jobruntime.spec import rules
from jobruntime.spec.rules import iso as iso
from jobruntime.spec.rules import utcnow as utcnow

SCHEMA_VERSION: Literal[1] = 1

Name = Annotated[str, Field(pattern=rules.NAME)]
"""Identifiers a person types: org, dataset and parameter names."""

Sha256Hex = Annotated[str, Field(pattern=rules.SHA256_HEX)]
ImageDigest = Annotated[str, Field(pattern=rules.DIGEST)]
KeyId = Sha256Hex
RunId = Annotated[str, Field(pattern=rules.RUN_ID)]

UtcDatetime = Annotated[datetime, AfterValidator(rules.utc)]

SafeInt = Annotated[StrictInt, Field(ge=-rules.SAFE_INT, le=rules.SAFE_INT)]
"""Integers RFC 8785 (I-JSON) can carry exactly; larger ones are refused, not a 500."""


def _float_only(value: object) -> object:
    if isinstance(value, int):  # an int out of SafeInt's range must not become a float
        raise ValueError("integers must be within +-2^53")
    return value


FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False), BeforeValidator(_float_only)]
Scalar = StrictBool | SafeInt | FiniteFloat | StrictStr
ParamValue = Scalar | list[Scalar]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=rules.MAX_STRING)


class JobModule(_Strict):
    """The code that runs, pinned by the SHA-256 of its source file."""

    import_name: Annotated[str, Field(pattern=rules.IMPORT_NAME)]
    sha256: Sha256Hex
    entry: Annotated[str, Field(pattern=rules.ENTRY)] = "run"


class Dataset(_Strict):
    """A dataset the run reads or writes; the key id names its master key in the KMS."""

    name: Name
    uri: Annotated[
        str, Field(min_length=1, max_length=rules.MAX_URI), AfterValidator(rules.canonical_uri)
    ]
    key_id: Annotated[str, Field(pattern=rules.DATASET_KEY_ID)]
    owner: Name


class ValidityWindow(_Strict):
    not_before: UtcDatetime
    expires: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> ValidityWindow:
        rules.window_ordered(self.not_before, self.expires)
        return self


class ApprovalPolicy(_Strict):
    """Which owners must approve, and how many distinct keys each must use.

    The trust root sets each owner's floor; a spec may raise it, never lower it.
    """

    required_owners: Annotated[list[Name], Field(min_length=1, max_length=rules.MAX_OWNERS)]
    threshold: Annotated[int, Field(ge=1, le=rules.MAX_THRESHOLD)] = 1

    @model_validator(mode="after")
    def _unique(self) -> ApprovalPolicy:
        rules.owners_unique(self.required_owners)
        return self


PodRole = Literal["driver", "executor"]
POD_ROLES: tuple[PodRole, ...] = ("driver", "executor")
HostDataHex = Annotated[str, Field(pattern=rules.SHA256_HEX)]


class Workload(_Strict):
    """Where the run may execute, and the pods that may get its keys.

    ``pod`` (Confidential Containers): each pod is its own SEV-SNP guest and the host
    sets HOST_DATA to the digest of the pod's policy; ``host_data`` names the value
    expected for each pod role, and keys go only to evidence that matches.
    ``node`` (confidential node pools): the evidence says nothing about the pod, so
    whoever controls the cluster is trusted; a key's release policy must allow it.
    """

    isolation: Literal["pod", "node"] = "pod"
    host_data: Annotated[dict[PodRole, HostDataHex], Field(max_length=2)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        rules.workload_consistent(self.isolation, self.host_data)
        return self

    @property
    def complete(self) -> bool:
        """Pod isolation names HOST_DATA for every role; node isolation needs none."""
        return self.isolation == "node" or set(self.host_data) == set(POD_ROLES)


class _RunBody(_Strict):
    """What the submitter chooses: the job, its code, its data and its parameters."""

    job_id: Name
    workspace: Name
    module: JobModule
    image_digest: ImageDigest
    parameters: Annotated[dict[Name, ParamValue], Field(max_length=rules.MAX_PARAMETERS)] = Field(
        default_factory=dict
    )
    inputs: Annotated[list[Dataset], Field(max_length=rules.MAX_DATASETS)] = Field(
        default_factory=list
    )
    outputs: Annotated[list[Dataset], Field(max_length=rules.MAX_DATASETS)] = Field(
        default_factory=list
    )
    workload: Workload = Field(default_factory=Workload)

    @model_validator(mode="after")
    def _unique_names(self) -> _RunBody:
        rules.dataset_names_unique([d.name for d in (*self.inputs, *self.outputs)])
        return self


class JobRunSpec(_RunBody):
    """One job run. The control plane signs its canonical JSON in a DSSE envelope."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: RunId
    validity: ValidityWindow
    nonce: Sha256Hex
    approval_policy: ApprovalPolicy

    @model_validator(mode="after")
    def _owners_approve(self) -> JobRunSpec:
        rules.owners_approve(
            (d.owner for d in (*self.inputs, *self.outputs)), self.approval_policy.required_owners
        )
        return self

    def dataset(self, name: str) -> Dataset | None:
        for d in (*self.inputs, *self.outputs):
            if d.name == name:
                return d
        return None


class JobRunRequest(_RunBody):
    """What a submitter sends; the control plane adds the run id, nonce and window."""

    validity: ValidityWindow | None = None
    valid_for_seconds: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] = 24 * 3600
    approval_policy: ApprovalPolicy | None = None


class Approval(_Strict):
    """What an owner signs: its decision on one exact spec (by digest)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["approval"] = "approval"
    run_id: RunId
    spec_digest: ImageDigest
    owner: Name
    approved_at: UtcDatetime


class ClaimReceipt(_Strict):
    """What the control plane signs when a verifier claims a run, once."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["claim"] = "claim"
    run_id: RunId
    spec_digest: ImageDigest
    claim_id: Sha256Hex
    claimed_at: UtcDatetime


class AuditCheckpoint(_Strict):
    """What the control plane signs with every audit answer: how long the log is, its head."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["audit-checkpoint"] = "audit-checkpoint"
    count: Annotated[int, Field(ge=0)]
    head: Sha256Hex
    at: UtcDatetime


class CancelOrder(_Strict):
    """What the control plane signs when it orders a run's pods to stop."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["cancel"] = "cancel"
    run_id: RunId
    reason: Annotated[str, Field(max_length=rules.MAX_REASON)]
    issued_at: UtcDatetime
