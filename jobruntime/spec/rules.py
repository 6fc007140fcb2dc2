"""The spec's field formats and cross-field rules, and its clock: no pydantic here.

Two checkers read the signed documents: the pydantic models (``models.py``: the control
plane, the verifier, the driver, the tools) and the plain-JSON checks (``plain.py``: the
pod's sidecars, which cannot afford pydantic's memory). Both take every pattern, limit
and rule from here, so they agree by construction; ``tests/test_plain_schemas.py``
checks that they agree in fact.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime

NAME = r"^[a-z][a-z0-9_-]{0,62}$"
"""Identifiers a person types: org, dataset and parameter names."""
SHA256_HEX = r"^[0-9a-f]{64}$"
DIGEST = r"^sha256:[0-9a-f]{64}$"
"""An image digest, a spec digest, a manifest digest."""
RUN_ID = r"^run-[0-9a-z-]{6,64}$"
IMPORT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
ENTRY = r"^[A-Za-z_][A-Za-z0-9_]*$"
DATASET_KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
POD_ID = r"^[0-9a-f]{32}$"

MAX_STRING = 4096
"""Every string of a signed document (spec, approval, order) is at most this long."""
MAX_URI = 2048
SAFE_INT = 2**53 - 1
"""Integers RFC 8785 (I-JSON) can carry exactly; larger ones are refused, not a 500."""
MAX_DATASETS = 64
MAX_PARAMETERS = 256
MAX_OWNERS = 64
MAX_THRESHOLD = 16
MAX_REASON = 200
POD_ROLES = ("driver", "executor")
ISOLATIONS = ("pod", "node")


def utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must carry a UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        raise ValueError("timestamp is out of range in UTC") from None


def canonical_uri(value: str) -> str:
    """One spelling per dataset: specs never hold a relative path or another spelling."""
    from jobruntime.storage.errors import StorageError
    from jobruntime.storage.uri import require_canonical

    try:
        return require_canonical(value)
    except StorageError as exc:
        raise ValueError(exc.message) from None


def window_ordered(not_before: datetime, expires: datetime) -> None:
    if expires <= not_before:
        raise ValueError("expires must be after not_before")


def owners_unique(owners: Collection[str]) -> None:
    if len(set(owners)) != len(owners):
        raise ValueError("required_owners lists an owner twice")


def workload_consistent(isolation: str, host_data: Collection[str]) -> None:
    if isolation == "node" and host_data:
        raise ValueError("node isolation has no pod identity: host_data must be empty")


def dataset_names_unique(names: Collection[str]) -> None:
    if len(set(names)) != len(names):
        raise ValueError("dataset names must be unique across inputs and outputs")


def owners_approve(dataset_owners: Iterable[str], required_owners: Iterable[str]) -> None:
    missing = sorted(set(dataset_owners) - set(required_owners))
    if missing:
        raise ValueError(f"approval_policy misses dataset owners: {', '.join(missing)}")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    """Second-precision UTC, for messages."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
