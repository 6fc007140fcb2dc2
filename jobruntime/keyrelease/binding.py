"""What a pod's REPORT_DATA must say: this nonce, run, spec, key, purpose, pod and role.

The spec digest is the workload's identity as the owners approved it; the pod id
ties the sessions of one pod's containers together (the verifier draws it and
writes it into the bundle, the key agent and heartbeat sidecar bind the same one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from jobruntime.spec.codec import canonical


@dataclass(frozen=True)
class Binding:
    nonce: str
    run_id: str
    spec_digest: str
    key_thumbprint: str
    purpose: str
    pod_id: str
    role: str

    def report_data(self) -> bytes:
        """64 bytes: SHA-512 of the RFC 8785 form, so both sides compute it identically."""
        body = {
            "key": self.key_thumbprint,
            "nonce": self.nonce,
            "pod": self.pod_id,
            "purpose": self.purpose,
            "role": self.role,
            "run_id": self.run_id,
            "spec_digest": self.spec_digest,
        }
        return hashlib.sha512(canonical(body)).digest()


@dataclass(frozen=True)
class PodIdentity:
    """Which run, which signed spec, which pod and in which role: what evidence binds."""

    run_id: str
    spec_digest: str
    pod_id: str
    role: Literal["driver", "executor"]
