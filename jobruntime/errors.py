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


class DebugRefusedError(ConfigError):
    """``JOBRUNTIME_DEBUG`` set outside development mode: tracebacks can quote data."""

    code = "config.debug_refused"


class ConfirmationRequiredError(ConfigError):
    """A command that signs asked for a confirmation nobody could give (no terminal)."""

    code = "confirmation.required"


class KeyFileError(ConfigError):
    """A key file is missing, unreadable or of an unsupported type."""

    code = "keys.invalid"


class TrustRootError(ConfigError):
    """The pinned trust root is malformed or inconsistent."""

    code = "trustroot.invalid"


# --- step 1: envelope and schema ---------------------------------------------------


class SpecError(JobRuntimeError):
    """Step 1: the signed spec could not be decoded."""

    code = "spec.invalid"
    exit_code = 10


class SpecTooLargeError(SpecError):
    """The spec or its envelope is over the size limit (checked before parsing)."""

    code = "spec.too_large"


class SpecTooDeepError(SpecError):
    """The JSON nests deeper than the limit (checked before parsing)."""

    code = "spec.too_deep"


class SpecSchemaError(SpecError):
    """Not JSON, or not the strict schema (unknown fields are refused)."""

    code = "spec.schema"


class EnvelopeError(SpecError):
    """Not a DSSE envelope of the expected payload type."""

    code = "envelope.malformed"


# --- step 2: signatures --------------------------------------------------------------


class SignatureError(JobRuntimeError):
    """Too few distinct, valid, trusted keys signed."""

    code = "signature.threshold"
    exit_code = 11


class UnknownKeyError(SignatureError):
    """Signed by a key the trust root does not give this role."""

    code = "signature.unknown_key"


class KeyExpiredError(SignatureError):
    """Signed by a key outside its validity period."""

    code = "signature.key_expired"


class KeyRevokedError(SignatureError):
    """Signed by a revoked key."""

    code = "signature.key_revoked"


class BadSignatureError(SignatureError):
    """A signature does not match the payload (the payload was altered)."""

    code = "signature.invalid"


# --- step 3: approvals ---------------------------------------------------------------


class ApprovalError(JobRuntimeError):
    """An approval is for another spec or run, or by an owner the run does not need."""

    code = "approval.invalid"
    exit_code = 12


class ApprovalThresholdError(ApprovalError):
    """An owner has too few distinct valid approving keys."""

    code = "approval.threshold"


# --- step 4: validity window ---------------------------------------------------------


class ValidityError(JobRuntimeError):
    """Step 4: outside the spec's validity window."""

    code = "validity.invalid"
    exit_code = 13


class SpecExpiredError(ValidityError):
    """The spec's expiry, plus the allowed skew, has passed."""

    code = "validity.expired"


class SpecNotYetValidError(ValidityError):
    """The spec's not-before, minus the allowed skew, is still ahead."""

    code = "validity.not_yet_valid"


# --- step 5: run identity ------------------------------------------------------------


class RunIdMismatchError(JobRuntimeError):
    """The signed spec is for another run than the pod's (substitution)."""

    code = "run.mismatch"
    exit_code = 14


# --- step 6: one-time claim ----------------------------------------------------------


class ClaimError(JobRuntimeError):
    """The control plane refused the claim, or its receipt is not genuine."""

    code = "claim.refused"
    exit_code = 15


class ClaimReplayedError(ClaimError):
    """The run was already claimed by another verifier."""

    code = "claim.replayed"


class RunCancelledError(ClaimError):
    """The run was cancelled."""

    code = "claim.cancelled"


# --- steps 7 and 8: code digests -----------------------------------------------------


class ModuleDigestError(JobRuntimeError):
    """The job module file differs from the one the spec pins."""

    code = "digest.module"
    exit_code = 16


class ImageDigestError(JobRuntimeError):
    """The image differs from the one the spec pins."""

    code = "digest.image"
    exit_code = 17


# --- step 9: attestation (filled in by the attestation issue) -----------------------


class AttestationError(JobRuntimeError):
    """Attestation evidence is missing, forged or outside policy."""

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
    """The control plane could not be reached before the deadline, or kept failing."""

    code = "controlplane.unavailable"


class ControlPlaneNotRunningError(ControlPlaneUnavailableError):
    """A control plane on this machine refused the connection: nothing listens there."""

    code = "controlplane.not_running"


class AuthError(ControlPlaneError):
    """The control plane refused the token (401) or the role (403)."""

    code = "controlplane.auth"


class NotFoundError(ControlPlaneError):
    """The control plane knows no such run."""

    code = "controlplane.not_found"


# --- outputs -------------------------------------------------------------------------


class BundleWriteError(JobRuntimeError):
    """The verified bundle could not be written."""

    code = "bundle.write"
    exit_code = 21


# --- audit log -----------------------------------------------------------------------


class AuditChainError(JobRuntimeError):
    """The audit log is altered, reordered, truncated inside, or not signed by the control plane."""

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
