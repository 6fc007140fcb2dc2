"""Typed attestation failures, one stable ``code`` per reason a report is refused.

All of them are ``AttestationError`` (exit code 18), so callers that only care
that attestation failed catch one class, and logs and tests key on ``code``.
"""

from __future__ import annotations

from jobruntime.errors import AttestationError

# --- the evidence itself ------------------------------------------------------------


class ReportMalformedError(AttestationError):
    """The bytes are not an ATTESTATION_REPORT this parser understands."""

    code = "attestation.malformed"


class UnsupportedReportVersionError(ReportMalformedError):
    code = "attestation.unsupported_version"


class UnsupportedSignatureAlgorithmError(ReportMalformedError):
    code = "attestation.unsupported_algorithm"


class CertificateError(AttestationError):
    """A certificate cannot be decoded or lacks what AMD's format requires."""

    code = "attestation.certificate"


# --- step 1: report signature -------------------------------------------------------


class ReportSignatureError(AttestationError):
    code = "attestation.signature"


# --- step 2: certificate chain and product --------------------------------------------


class ChainError(AttestationError):
    code = "attestation.chain"


class ProductMismatchError(AttestationError):
    code = "attestation.product"


class EmulatedRootError(AttestationError):
    """Evidence or a root from the emulated TEE where only AMD hardware is accepted."""

    code = "attestation.emulated"


# --- step 3: report against the endorsement key's certificate ---------------------------


class TcbMismatchError(AttestationError):
    code = "attestation.tcb_mismatch"


class ChipIdMismatchError(AttestationError):
    code = "attestation.chip_id"


# --- step 4: policy ---------------------------------------------------------------------


class PolicyError(AttestationError):
    """Base of every policy refusal: the evidence is genuine but not acceptable."""

    code = "attestation.policy"


class DebugEnabledError(PolicyError):
    code = "attestation.debug"


class MeasurementError(PolicyError):
    code = "attestation.measurement"


class TcbTooLowError(PolicyError):
    code = "attestation.tcb_too_low"


class GuestSvnError(PolicyError):
    code = "attestation.guest_svn"


class VmplError(PolicyError):
    code = "attestation.vmpl"


class HostDataError(PolicyError):
    code = "attestation.host_data"


class ReportDataError(PolicyError):
    code = "attestation.report_data"


class MigrationAgentError(PolicyError):
    code = "attestation.migration_agent"


class SmtError(PolicyError):
    code = "attestation.smt"


class SingleSocketError(PolicyError):
    code = "attestation.single_socket"


class ChipNotAllowedError(PolicyError):
    code = "attestation.chip_not_allowed"


class IsolationError(PolicyError):
    """The run's isolation mode is not one the policy accepts."""

    code = "attestation.isolation"


class EmptyPolicyError(PolicyError):
    """A policy with no rules in it: refused rather than read as "anything goes"."""

    code = "attestation.empty_policy"


# --- obtaining evidence ---------------------------------------------------------------


class EvidenceError(AttestationError):
    """An evidence document is malformed: wrong shape, encoding, kind or size."""

    code = "attestation.evidence"


class NoTeeError(AttestationError):
    """No supported TEE interface is present on this machine (the emulator never counts)."""

    code = "attestation.no_tee"


class CollectError(AttestationError):
    """A TEE interface is present but did not produce evidence (firmware, driver, tool)."""

    code = "attestation.collect"
