"""What every route of the emulator shares: state, keys, and who may call what.

Routes live in ``app`` (runs, approvals, claims, audit) and ``kms`` (dataset keys
and attested release); both take their principal from ``Context.allow``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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


class DenialCounter:
    """Unauthenticated refusals are counted, not written one by one.

    Anyone can send requests without a token: an audit entry each (holding their path)
    would let them grow the signed log without bound. The counts go into one summary
    entry per interval (``flush``), and the log holds no caller-chosen string.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._since = utcnow()

    def count(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1

    def flush(self, ctx: Context, now: datetime, every: timedelta) -> None:
        with self._lock:
            if not self._counts or now - self._since < every:
                return
            counts, self._counts, since = self._counts, {}, self._since
            self._since = now
        ctx.audit(
            now,
            "auth.denied_unauthenticated",
            None,
            "anonymous",
            {"counts": counts, "since": since.isoformat()},
        )


@dataclass
class Context:
    state_dir: Path
    key: SigningKey
    trust_root: TrustRoot
    store: Store
    tokens: dict[str, Principal]
    bearer: HTTPBearer = field(default_factory=lambda: HTTPBearer(auto_error=False))
    denials: DenialCounter = field(default_factory=lambda: DenialCounter())

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
            now = utcnow()
            # The route's template, never the caller's own path string.
            route = getattr(request.scope.get("route"), "path", "") or "unknown route"
            if creds is None:
                self.denials.count("missing token")
                raise ApiError(401, "auth.missing", "a bearer token is required")
            principal = self.tokens.get(token_digest(creds.credentials))
            if principal is None:
                self.denials.count("unknown token")
                raise ApiError(401, "auth.invalid", "the bearer token is not valid")
            if principal.role not in roles:
                self.audit(
                    now,
                    "auth.denied",
                    None,
                    principal.name,
                    {"path": route, "reason": f"role {principal.role.value} not allowed"},
                )
                raise ApiError(
                    403,
                    "auth.forbidden",
                    f"{principal.role.value} may not call {request.method} {route}",
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
