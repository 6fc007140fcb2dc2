"""What only the pod can check: the job module and the image it was started with.

Each check takes a :class:`VerifiedSpec`, so it cannot run on an unverified spec.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from jobruntime.errors import ImageDigestError, ModuleDigestError
from jobruntime.verification.signed import VerifiedSpec


@dataclass(frozen=True)
class ModuleDigest:
    """Step 7: the job module in the image is byte for byte the one the spec pins."""

    path: Path
    name: str = "7. module digest"

    def verify(self, verified: VerifiedSpec) -> None:
        try:
            actual = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ModuleDigestError(f"cannot read job module {self.path}: {exc.strerror}") from None
        pinned = verified.spec.module.sha256
        if not hmac.compare_digest(actual, pinned):
            raise ModuleDigestError(
                f"{self.path} has SHA-256 {actual[:16]}…, the spec pins {pinned[:16]}…"
            )


@dataclass(frozen=True)
class ImageDigest:
    """Step 8: the pod runs the image the spec pins (attestation binds it for real)."""

    digest: str
    name: str = "8. image digest"

    def verify(self, verified: VerifiedSpec) -> None:
        pinned = verified.spec.image_digest
        if not hmac.compare_digest(self.digest, pinned):
            raise ImageDigestError(f"image is {self.digest[:23]}…, the spec pins {pinned[:23]}…")
