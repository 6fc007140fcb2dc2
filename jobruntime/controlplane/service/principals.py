"""Who calls: a principal is a bearer token's name, role and organisation.

The service keeps token digests only, never raw tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from jobruntime.controlplane.api import Role


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    org: str | None = None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
