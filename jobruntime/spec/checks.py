"""The verifier's checks, one small object per numbered step.

Modelled on sigstore-python's ``verify/policy.py``: each check is a tiny class
with ``verify(subject)`` that raises a typed error, so steps compose, reorder
and test on their own. Steps 8 (claim) and 9 (attestation) talk to the control
plane and live in ``verifier.run``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from jobruntime.controlplane.api import SignedRun
from jobruntime.errors import (
    ConfigError,
    EnvelopeError,
    ImageDigestError,
    ModuleDigestError,
    RunIdMismatchError,
    SpecExpiredError,
    SpecNotYetValidError,
)
from jobruntime.signing import approvals, envelope
from jobruntime.signing.envelope import Envelope
from jobruntime.signing.trustroot import CONTROL_PLANE, TrustRoot
from jobruntime.spec.codec import MAX_SPEC_BYTES, load_json, parse_model, sha256_digest
from jobruntime.spec.models import JobRunSpec, iso

MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Subject:
    """What the checks look at: the decoded envelope, its spec and the approvals."""

    envelope: Envelope
    spec: JobRunSpec
    spec_digest: str
    approvals: list[dict[str, Any]]
    now: datetime


class Check(Protocol):
    @property
    def step(self) -> int: ...
    @property
    def name(self) -> str: ...

    def verify(self, subject: Subject) -> None: ...


def decode(body: bytes, now: datetime) -> Subject:
    """Step 1: envelope and schema, after size and depth limits on the raw bytes."""
    obj = load_json(body, "signed spec response", max_bytes=4 * MAX_SPEC_BYTES)
    try:
        signed = SignedRun.model_validate(obj)
    except ValidationError:
        raise EnvelopeError("signed spec response is not {envelope, approvals}") from None
    env = envelope.from_json(signed.envelope, envelope.SPEC_TYPE, "spec envelope")
    spec = parse_model(JobRunSpec, env.payload, "spec")
    return Subject(env, spec, sha256_digest(env.payload), signed.approvals, now)


@dataclass(frozen=True)
class ControlPlaneSignature:
    """Step 2: signed by the threshold of control-plane keys valid now."""

    trust_root: TrustRoot
    step: int = 2
    name: str = "control-plane signature"

    def verify(self, subject: Subject) -> None:
        envelope.verify(
            subject.envelope,
            self.trust_root,
            self.trust_root.control_plane,
            CONTROL_PLANE,
            subject.now,
        )


@dataclass(frozen=True)
class OwnerApprovals:
    """Step 3: every owner the run needs reached its threshold of distinct keys."""

    trust_root: TrustRoot
    step: int = 3
    name: str = "owner approvals"

    def verify(self, subject: Subject) -> None:
        tally = approvals.tally(
            subject.approvals, subject.spec, subject.spec_digest, self.trust_root, subject.now
        )
        tally.require_threshold()


@dataclass(frozen=True)
class ValidityWindow:
    """Step 4: now is inside [not_before, expires], give or take a bounded skew."""

    skew: timedelta = timedelta(seconds=60)
    step: int = 4
    name: str = "validity window"

    def __post_init__(self) -> None:
        if not timedelta(0) <= self.skew <= MAX_CLOCK_SKEW:
            raise ConfigError(f"clock skew must be between 0 and {MAX_CLOCK_SKEW.seconds} s")

    def verify(self, subject: Subject) -> None:
        window = subject.spec.validity
        if subject.now + self.skew < window.not_before:
            raise SpecNotYetValidError(
                f"run {subject.spec.run_id} is valid only from {iso(window.not_before)}"
            )
        if subject.now - self.skew > window.expires:
            raise SpecExpiredError(f"run {subject.spec.run_id} expired at {iso(window.expires)}")


@dataclass(frozen=True)
class RunIdentity:
    """Step 5: the spec is for the run this pod was started for (no substitution)."""

    run_id: str
    step: int = 5
    name: str = "run id"

    def verify(self, subject: Subject) -> None:
        if subject.spec.run_id != self.run_id:
            raise RunIdMismatchError(
                f"asked to verify {self.run_id} but the signed spec is for {subject.spec.run_id}"
            )


@dataclass(frozen=True)
class ModuleDigest:
    """Step 6: the job module in the image is byte for byte the one the spec pins."""

    path: Path
    step: int = 6
    name: str = "module digest"

    def verify(self, subject: Subject) -> None:
        try:
            actual = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ModuleDigestError(f"cannot read job module {self.path}: {exc.strerror}") from None
        if not hmac.compare_digest(actual, subject.spec.module.sha256):
            raise ModuleDigestError(
                f"{self.path} has SHA-256 {actual[:16]}…, the spec pins "
                f"{subject.spec.module.sha256[:16]}…"
            )


@dataclass(frozen=True)
class ImageDigest:
    """Step 7: the pod runs the image the spec pins."""

    digest: str
    step: int = 7
    name: str = "image digest"

    def verify(self, subject: Subject) -> None:
        if not hmac.compare_digest(self.digest, subject.spec.image_digest):
            raise ImageDigestError(
                f"image is {self.digest[:23]}…, the spec pins {subject.spec.image_digest[:23]}…"
            )


@dataclass(frozen=True)
class AllOf:
    """Run checks in step order; the first failure stops verification."""

    checks: tuple[Check, ...]

    def verify(self, subject: Subject) -> list[str]:
        done = []
        for check in sorted(self.checks, key=lambda c: c.step):
            check.verify(subject)
            done.append(f"{check.step}. {check.name}")
        return done
