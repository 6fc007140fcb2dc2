"""The emulator's side of the control plane: its state directory, and HTTP auth.

``load_control_plane`` builds the service (``jobruntime.controlplane.service``) from
an emulator state directory; ``Auth`` turns its ``authorize`` into FastAPI
dependencies, and ``error_response`` shapes the service's refusals as the API's
error body.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobruntime.attestation.certs import ProductChain
from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT, load_tee
from jobruntime.attestation.roots import amd_chains
from jobruntime.controlplane.api import ErrorBody, EvidenceKind, Purpose, ReleasePolicy, Role
from jobruntime.controlplane.service.core import AttestationTrust, ControlPlane
from jobruntime.controlplane.service.principals import Principal
from jobruntime.controlplane.service.repository import Repository
from jobruntime.emulator.state import (
    CONTROL_PLANE_KEY,
    DATABASE,
    TEE_DIR,
    TRUST_ROOT,
    load_tokens,
    principals,
)
from jobruntime.errors import ConfigError
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot

ATTEST_POLICIES = "attest-policies.json"
PURPOSES: tuple[Purpose, ...] = ("verifier", "key-agent", "heartbeat")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    body = ErrorBody.model_validate({"error": {"code": code, "message": message}})
    return JSONResponse(status_code=status, content=body.model_dump())


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 422)
}


def load_control_plane(state_dir: Path) -> ControlPlane:
    key = SigningKey.load(state_dir / CONTROL_PLANE_KEY)
    chains, allow_emulated = trusted_chains(state_dir)
    # Tests shorten it to see a stale nonce refused.
    ttl = timedelta(seconds=float(os.environ.get("JOBRUNTIME_KMS_NONCE_TTL", "60")))
    return ControlPlane(
        key=key,
        trust_root=TrustRoot.load(state_dir / TRUST_ROOT),
        repo=Repository(state_dir / DATABASE, key),
        tokens=principals(load_tokens(state_dir)),
        trust=AttestationTrust(chains, allow_emulated, attest_policies(state_dir), ttl),
        trust_root_path=state_dir / TRUST_ROOT,
    )


def trusted_chains(state_dir: Path) -> tuple[list[ProductChain], bool]:
    """AMD's roots always; the emulated chip's root when this state has one."""
    chains = list(amd_chains())
    tee_dir = state_dir / TEE_DIR
    if tee_dir.exists():
        chains.append(load_tee(tee_dir).chain)
        return chains, True
    return chains, False


def attest_policies(state_dir: Path) -> dict[Purpose, ReleasePolicy]:
    """What evidence opens a session, per purpose: the state's file, else the local default.

    The default accepts the emulated TEE's measurement in either isolation mode: the
    emulator serves local work. A deployment names its own in ``attest-policies.json``.
    """
    path = state_dir / ATTEST_POLICIES
    if not path.exists():
        local = ReleasePolicy(
            isolation=["pod", "node"],
            evidence_kinds=list(EvidenceKind),
            measurements=[EMULATED_MEASUREMENT.hex()],
        )
        return {p: local for p in PURPOSES}
    try:
        obj = json.loads(path.read_bytes())
        policies: dict[Purpose, ReleasePolicy] = {
            p: ReleasePolicy.model_validate(obj[p]) for p in PURPOSES
        }
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} must name a release policy for each of {PURPOSES}") from None
    return policies


class Auth:
    """FastAPI dependencies: the route's caller, if its role may call the route."""

    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self._bearer = HTTPBearer(auto_error=False)

    def allow(self, *roles: Role) -> Callable[..., Principal]:
        def dependency(
            request: Request,
            creds: HTTPAuthorizationCredentials | None = Depends(self._bearer),  # noqa: B008
        ) -> Principal:
            # The route's template, never the caller's own path string.
            route = getattr(request.scope.get("route"), "path", "") or "unknown route"
            token = creds.credentials if creds is not None else None
            return self._cp.authorize(token, roles, request.method, route)

        return dependency

    def __call__(self, *roles: Role) -> Any:
        """``Depends`` on ``allow``: the default value a route gives its principal."""
        return Depends(self.allow(*roles))
