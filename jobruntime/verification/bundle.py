"""The verified bundle: what the verifier hands the pod's other containers, and how they load it.

It holds the signed spec envelope, the approvals and a receipt of what was checked
(with the pod's id, which later attestations of this pod bind); never a key, and no
parsed spec: every reader re-verifies the envelope and approvals against the trust
root pinned in its own image before it uses anything (:func:`load_bundle`), so a
bundle written by anyone else gets no further than a forged signature would.

It is written atomically (temp file, fsync, rename) with mode 0600, so a reader sees
a whole bundle or none. The pod's sidecars load it without pydantic, with the same
checks (``sidecar.load_plain_bundle``).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobruntime.errors import BundleWriteError, ConfigError, JobRuntimeError
from jobruntime.signing.roots import RootLike
from jobruntime.spec import rules
from jobruntime.spec.codec import parse_model
from jobruntime.spec.models import PodRole
from jobruntime.verification.sidecar import BUNDLE_NAME as BUNDLE_NAME
from jobruntime.verification.sidecar import VerifiedBundle, read_bundle
from jobruntime.verification.signed import DEFAULT_SKEW, VerifiedSpec, verify_signed_run

POD_ID = rules.POD_ID


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    spec_digest: str
    pod_id: str = Field(pattern=POD_ID)
    role: PodRole
    verified_at: datetime
    verifier_version: str
    trust_root_digest: str
    module_path: str
    module_sha256: str
    image_digest: str
    checks: list[str]
    claim: dict[str, Any]
    attestation: dict[str, Any] | None = None


class BundleFile(BaseModel):
    """The file's shape; nothing in it is trusted until :func:`load_bundle` verified it."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = 2
    envelope: dict[str, Any]
    approvals: list[dict[str, Any]]
    receipt: Receipt


class PodBundle(VerifiedBundle[VerifiedSpec, Receipt]):
    """The verifier's and the driver's form: the spec as the pydantic model."""


def load_bundle(
    directory: Path,
    trust_root: RootLike,
    *,
    now: datetime,
    skew: timedelta = DEFAULT_SKEW,
) -> PodBundle:
    """Read, then verify the spec's signature and approvals, then trust the receipt's ids."""
    path = directory / BUNDLE_NAME
    data = read_bundle(directory)
    try:
        raw = parse_model(BundleFile, data, str(path))
    except JobRuntimeError:
        raise ConfigError(f"{path} is not a verified bundle") from None
    verified = verify_signed_run(
        raw.envelope,
        raw.approvals,
        trust_root,
        now=now,
        run_id=raw.receipt.run_id,
        skew=skew,
    )
    if raw.receipt.spec_digest != verified.digest:
        raise ConfigError(f"{path}: the receipt names another spec than the signed one")
    return PodBundle(verified, raw.receipt)


def write_atomically(directory: Path, bundle: BundleFile) -> Path:
    target = directory / BUNDLE_NAME
    data = bundle.model_dump_json(indent=2).encode()
    tmp: str | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".bundle-", dir=directory)  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        tmp = None
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise BundleWriteError(
            f"cannot write the bundle into {directory}: {exc.strerror}"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return target
