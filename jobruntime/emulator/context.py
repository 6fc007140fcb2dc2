"""What every route of the emulator shares: state, keys, and who may call what.

Routes live in ``app`` (runs, approvals, claims, audit) and ``kms`` (dataset keys
and attested release); both take their principal from ``Context.allow``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobruntime.controlplane.api import ErrorBody, Role
from jobruntime.emulator.state import (
    CONTROL_PLANE_KEY,
    DATABASE,
    TRUST_ROOT,
    Principal,
    load_tokens,
    principals,
    token_digest,
)
from jobruntime.emulator.store import Store
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import utcnow


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    body = ErrorBody.model_validate({"error": {"code": code, "message": message}})
    return JSONResponse(status_code=status, content=body.model_dump())


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 422)
}


@dataclass
class Context:
    state_dir: Path
    key: SigningKey
    trust_root: TrustRoot
    store: Store
    tokens: dict[str, Principal]
    bearer: HTTPBearer = field(default_factory=lambda: HTTPBearer(auto_error=False))

    @classmethod
    def load(cls, state_dir: Path) -> Context:
        key = SigningKey.load(state_dir / CONTROL_PLANE_KEY)
        return cls(
            state_dir=state_dir,
            key=key,
            trust_root=TrustRoot.load(state_dir / TRUST_ROOT),
            store=Store(state_dir / DATABASE, key),
            tokens=principals(load_tokens(state_dir)),
        )

    def audit(
        self, at: datetime, event: str, run_id: str | None, actor: str, details: dict[str, Any]
    ) -> None:
        """One audit entry in its own transaction (refusals, which change nothing else)."""
        with self.store.tx() as db:
            self.store.audit(db, at, event, run_id, actor, details)

    def allow(self, *roles: Role) -> Callable[..., Principal]:
        def dependency(
            request: Request,
            creds: HTTPAuthorizationCredentials | None = Depends(self.bearer),  # noqa: B008
        ) -> Principal:
            now, path = utcnow(), request.url.path
            if creds is None:
                self.audit(
                    now, "auth.denied", None, "anonymous", {"path": path, "reason": "missing token"}
                )
                raise ApiError(401, "auth.missing", "a bearer token is required")
            principal = self.tokens.get(token_digest(creds.credentials))
            if principal is None:
                self.audit(
                    now, "auth.denied", None, "anonymous", {"path": path, "reason": "unknown token"}
                )
                raise ApiError(401, "auth.invalid", "the bearer token is not valid")
            if principal.role not in roles:
                self.audit(
                    now,
                    "auth.denied",
                    None,
                    principal.name,
                    {"path": path, "reason": f"role {principal.role.value} not allowed"},
                )
                raise ApiError(
                    403,
                    "auth.forbidden",
                    f"{principal.role.value} may not call {request.method} {path}",
                )
            return principal

        return dependency

    def dependency(self, *roles: Role) -> Any:
        """``Depends`` on ``allow``: the default value a route gives its principal."""
        return Depends(self.allow(*roles))

    def load_run(self, run_id: str, who: Principal) -> sqlite3.Row:
        row = self.store.run(run_id)
        if row is None:
            raise ApiError(404, "run.not_found", f"no run {run_id}")
        spec = json.loads(row["spec"])
        if who.role is Role.SUBMITTER and row["submitter"] != who.name:
            raise ApiError(403, "auth.forbidden", f"{who.name} did not submit {run_id}")
        if who.role is Role.OWNER and who.org not in spec["approval_policy"]["required_owners"]:
            raise ApiError(403, "auth.forbidden", f"{who.name} is not an owner of {run_id}")
        return row
