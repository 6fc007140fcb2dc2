"""One error hierarchy for the whole runtime.

Modelled on ``tuf/api/exceptions.py`` and ``sigstore/errors.py``: every expected
failure is a typed exception with a stable ``code`` (for logs, API bodies and tests)
and a stable ``exit_code`` (for command-line tools and Kubernetes termination
messages). Messages are one line, name what failed and why, and never carry key
material or row values: callers pass identifiers and digests only.
"""

from __future__ import annotations

from typing import ClassVar


class JobRuntimeError(Exception):
    """Base of every expected failure."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 70

    def __init__(self, message: str) -> None:
        # Keep it to one line whatever the caller passed.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def one_line(self) -> str:
        """The form written to termination messages and stderr."""
        return f"{self.code}: {self.message}"


# --- configuration and local inputs -------------------------------------------------


class ConfigError(JobRuntimeError):
    """A flag, environment variable or local file the tool was given is unusable."""

    code = "config.invalid"
    exit_code = 2


class KeyFileError(ConfigError):
    code = "keys.invalid"


class TrustRootError(ConfigError):
    """The pinned trust root is malformed or inconsistent."""

    code = "trustroot.invalid"


# --- step 1: envelope and schema ---------------------------------------------------


class SpecError(JobRuntimeError):
    code = "spec.invalid"
    exit_code = 10


class SpecTooLargeError(SpecError):
    code = "spec.too_large"


class SpecTooDeepError(SpecError):
    code = "spec.too_deep"


class SpecSchemaError(SpecError):
    code = "spec.schema"


class EnvelopeError(SpecError):
    code = "envelope.malformed"


# --- step 2: signatures --------------------------------------------------------------


class SignatureError(JobRuntimeError):
    code = "signature.invalid"
    exit_code = 11


class UnknownKeyError(SignatureError):
    code = "signature.unknown_key"


class KeyExpiredError(SignatureError):
    code = "signature.key_expired"


class KeyRevokedError(SignatureError):
    code = "signature.key_revoked"


class BadSignatureError(SignatureError):
    code = "signature.invalid"


# --- step 3: approvals ---------------------------------------------------------------


class ApprovalError(JobRuntimeError):
    code = "approval.invalid"
    exit_code = 12


class ApprovalThresholdError(ApprovalError):
    code = "approval.threshold"


# --- step 4: validity window ---------------------------------------------------------


class ValidityError(JobRuntimeError):
    code = "validity.invalid"
    exit_code = 13


class SpecExpiredError(ValidityError):
    code = "validity.expired"


class SpecNotYetValidError(ValidityError):
    code = "validity.not_yet_valid"


# --- step 5: run identity ------------------------------------------------------------


class RunIdMismatchError(JobRuntimeError):
    code = "run.mismatch"
    exit_code = 14


# --- step 6: one-time claim ----------------------------------------------------------


class ClaimError(JobRuntimeError):
    code = "claim.refused"
    exit_code = 15


class ClaimReplayedError(ClaimError):
    code = "claim.replayed"


class RunCancelledError(ClaimError):
    code = "claim.cancelled"


# --- steps 7 and 8: code digests -----------------------------------------------------


class ModuleDigestError(JobRuntimeError):
    code = "digest.module"
    exit_code = 16


class ImageDigestError(JobRuntimeError):
    code = "digest.image"
    exit_code = 17


# --- step 9: attestation (filled in by the attestation issue) -----------------------


class AttestationError(JobRuntimeError):
    code = "attestation.invalid"
    exit_code = 18


# --- the control plane ---------------------------------------------------------------


class ControlPlaneError(JobRuntimeError):
    """The control plane answered with a refusal the caller did not expect."""

    code = "controlplane.refused"
    exit_code = 20

    def __init__(self, message: str, status: int | None = None, remote_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.remote_code = remote_code


class ControlPlaneUnavailableError(ControlPlaneError):
    code = "controlplane.unavailable"


class AuthError(ControlPlaneError):
    code = "controlplane.auth"


class NotFoundError(ControlPlaneError):
    code = "controlplane.not_found"


# --- outputs -------------------------------------------------------------------------


class BundleWriteError(JobRuntimeError):
    code = "bundle.write"
    exit_code = 21


# --- audit log -----------------------------------------------------------------------


class AuditChainError(JobRuntimeError):
    code = "audit.chain"
    exit_code = 30


def all_error_types() -> list[type[JobRuntimeError]]:
    """Every error class, for the documentation table and its test."""
    seen: list[type[JobRuntimeError]] = []
    stack: list[type[JobRuntimeError]] = [JobRuntimeError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(reversed(cls.__subclasses__()))
    return seen
