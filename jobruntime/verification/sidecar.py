"""The pod's sidecars load the verified bundle: the same checks, none of pydantic.

The key agent and the heartbeat sidecar run for the pod's whole life, and their
memory request is paid by every pod; pydantic alone would be a quarter of it. So
they re-verify the bundle here, on plain JSON: the trust root pinned in their image
(``roots.PlainTrustRoot``), the spec's control-plane signature over its exact bytes,
then its schema (``spec.plain``), the owners' approvals, the validity window and the
run id, exactly as ``bundle.load_bundle`` does for the driver (the one sequence in
``signed._verify``), and the receipt's shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from jobruntime.errors import ConfigError, JobRuntimeError
from jobruntime.keyrelease.binding import PodIdentity
from jobruntime.signing.roots import PlainTrustRoot, RootLike
from jobruntime.spec import plain, rules
from jobruntime.spec.codec import MAX_SPEC_BYTES, load_json
from jobruntime.spec.shapes import (
    Const,
    Field,
    JsonObject,
    ListOf,
    Nullable,
    OneOf,
    Record,
    Text,
    Timestamp,
)
from jobruntime.verification.pinned import Anchors, anchors
from jobruntime.verification.signed import DEFAULT_SKEW, PlainVerifiedSpec, verify_signed_run_plain

BUNDLE_NAME = "verified-bundle.json"

RECEIPT = Record(
    {
        "run_id": Field(Text()),
        "spec_digest": Field(Text()),
        "pod_id": Field(Text(rules.POD_ID)),
        "role": Field(OneOf(rules.POD_ROLES)),
        "verified_at": Field(Timestamp(utc=False)),
        "verifier_version": Field(Text()),
        "trust_root_digest": Field(Text()),
        "module_path": Field(Text()),
        "module_sha256": Field(Text()),
        "image_digest": Field(Text()),
        "checks": Field(ListOf(Text())),
        "claim": Field(JsonObject()),
        "attestation": Field(Nullable(JsonObject()), None),
    }
)
BUNDLE_FILE = Record(
    {
        "schema_version": Field(Const(2), 2),
        "envelope": Field(JsonObject()),
        "approvals": Field(ListOf(JsonObject())),
        "receipt": Field(RECEIPT),
    }
)


def read_bundle(directory: Path) -> bytes:
    """The bundle file's bytes, refused before parsing if it is missing or oversized."""
    path = directory / BUNDLE_NAME
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"no verified bundle at {path}: {exc.strerror}") from None
    if len(data) > 4 * MAX_SPEC_BYTES:
        raise ConfigError(f"{path} is over the size limit")
    return data


@dataclass(frozen=True)
class PlainReceipt:
    run_id: str
    spec_digest: str
    pod_id: str
    role: Literal["driver", "executor"]


class _Checked(Protocol):
    @property
    def run_id(self) -> str: ...

    @property
    def digest(self) -> str: ...


class _Receipt(Protocol):
    @property
    def pod_id(self) -> str: ...

    @property
    def role(self) -> Literal["driver", "executor"]: ...


_V = TypeVar("_V", bound=_Checked)
_R = TypeVar("_R", bound=_Receipt)


@dataclass(frozen=True)
class VerifiedBundle(Generic[_V, _R]):
    """A bundle whose spec was re-verified here: the only form consumers use."""

    verified: _V
    receipt: _R

    @property
    def run_id(self) -> str:
        return self.verified.run_id

    @property
    def identity(self) -> PodIdentity:
        """What this pod's later attestations bind: the verifier drew the pod id."""
        r = self.receipt
        return PodIdentity(self.run_id, self.verified.digest, r.pod_id, r.role)


class SidecarBundle(VerifiedBundle[PlainVerifiedSpec, PlainReceipt]):
    """The sidecars' form: the spec as plain JSON."""


def load_plain_bundle(
    directory: Path,
    trust_root: RootLike,
    *,
    now: datetime,
    skew: timedelta = DEFAULT_SKEW,
) -> SidecarBundle:
    """Read, then verify the spec's signature and approvals, then trust the receipt's ids."""
    path = directory / BUNDLE_NAME
    data = read_bundle(directory)
    try:
        raw: dict[str, Any] = plain.check(BUNDLE_FILE, load_json(data, str(path)), str(path))
    except JobRuntimeError:
        raise ConfigError(f"{path} is not a verified bundle") from None
    receipt = raw["receipt"]
    verified = verify_signed_run_plain(
        raw["envelope"], raw["approvals"], trust_root, now=now, run_id=receipt["run_id"], skew=skew
    )
    if receipt["spec_digest"] != verified.digest:
        raise ConfigError(f"{path}: the receipt names another spec than the signed one")
    role: Literal["driver", "executor"] = "driver" if receipt["role"] == "driver" else "executor"
    return SidecarBundle(
        verified, PlainReceipt(receipt["run_id"], receipt["spec_digest"], receipt["pod_id"], role)
    )


def load_sidecar_bundle(
    component: str,
    bundle_dir: Path,
    *,
    trust_root: str | os.PathLike[str] | None = None,
    control_plane_url: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    needs_control_plane: bool = True,
) -> tuple[Anchors, SidecarBundle]:
    """``consumer.load_pod_bundle`` for a sidecar: the image's anchors, the re-verified bundle."""
    pinned = anchors(
        component,
        trust_root=trust_root,
        control_plane_url=control_plane_url,
        ca_bundle=ca_bundle,
        needs_control_plane=needs_control_plane,
    )
    root = PlainTrustRoot.load(pinned.trust_root)
    return pinned, load_plain_bundle(bundle_dir, root, now=rules.utcnow())
