"""Typed failures of obtaining evidence, beside the verification errors in ``..errors``.

They live here only because this package may not edit ``attestation/errors.py``;
they are ``AttestationError`` (exit code 18) like every other attestation failure.
"""

from __future__ import annotations

from jobruntime.errors import AttestationError


class EvidenceError(AttestationError):
    """An evidence document is malformed: wrong shape, encoding, kind or size."""

    code = "attestation.evidence"


class NoTeeError(AttestationError):
    """No supported TEE interface is present on this machine (the emulator never counts)."""

    code = "attestation.no_tee"


class CollectError(AttestationError):
    """A TEE interface is present but did not produce evidence (firmware, driver, tool)."""

    code = "attestation.collect"
