"""What a pod's REPORT_DATA must say: this nonce, this run, this ephemeral key, this purpose."""

from __future__ import annotations

import hashlib

from jobruntime.spec.codec import canonical


def report_data(nonce: str, run_id: str, key_thumbprint: str, purpose: str) -> bytes:
    """64 bytes: SHA-512 of the RFC 8785 form, so both sides compute it identically."""
    body = {"key": key_thumbprint, "nonce": nonce, "purpose": purpose, "run_id": run_id}
    return hashlib.sha512(canonical(body)).digest()
