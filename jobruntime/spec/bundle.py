"""The verified bundle: what the verifier hands the pod's other containers.

It holds the signed spec, the approvals and a receipt of what was checked; never
a key. It is written atomically (temp file, fsync, rename) with mode 0600, so a
reader sees a whole bundle or none.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from jobruntime.errors import BundleWriteError, ConfigError
from jobruntime.spec.models import JobRunSpec

BUNDLE_NAME = "verified-bundle.json"


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    spec_digest: str
    verified_at: datetime
    verifier_version: str
    trust_root_digest: str
    module_path: str
    module_sha256: str
    image_digest: str
    checks: list[str]
    claim: dict[str, Any]
    attestation: dict[str, Any] | None = None


class VerifiedBundle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    spec: JobRunSpec
    envelope: dict[str, Any]
    approvals: list[dict[str, Any]]
    receipt: Receipt

    @classmethod
    def load(cls, directory: Path) -> VerifiedBundle:
        path = directory / BUNDLE_NAME
        try:
            return cls.model_validate_json(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"no verified bundle at {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"{path} is not a verified bundle") from None


def write_atomically(directory: Path, bundle: VerifiedBundle) -> Path:
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
