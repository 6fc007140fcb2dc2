"""Failures of obtaining evidence (defined with the other attestation errors)."""

from jobruntime.attestation.errors import CollectError, EvidenceError, NoTeeError

__all__ = ["CollectError", "EvidenceError", "NoTeeError"]
