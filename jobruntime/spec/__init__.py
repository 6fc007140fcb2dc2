"""Job-run spec models and their canonical encoding."""

from jobruntime.spec.codec import canonical, check_limits, parse_model, sha256_digest
from jobruntime.spec.models import (
    Approval,
    ApprovalPolicy,
    ClaimReceipt,
    Dataset,
    JobModule,
    JobRunRequest,
    JobRunSpec,
    ValidityWindow,
    utcnow,
)

__all__ = [
    "Approval",
    "ApprovalPolicy",
    "ClaimReceipt",
    "Dataset",
    "JobModule",
    "JobRunRequest",
    "JobRunSpec",
    "ValidityWindow",
    "canonical",
    "check_limits",
    "parse_model",
    "sha256_digest",
    "utcnow",
]
