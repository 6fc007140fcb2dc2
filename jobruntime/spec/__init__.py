"""Job-run spec models and their canonical encoding.

Names are loaded on first use: a sidecar that needs only ``spec.codec`` or
``spec.plain`` must not pay for pydantic (``spec.models``) by importing the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "canonical": "codec",
    "check_limits": "codec",
    "parse_model": "codec",
    "sha256_digest": "codec",
    "Approval": "models",
    "ApprovalPolicy": "models",
    "ClaimReceipt": "models",
    "Dataset": "models",
    "JobModule": "models",
    "JobRunRequest": "models",
    "JobRunSpec": "models",
    "ValidityWindow": "models",
    "utcnow": "models",
}

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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
