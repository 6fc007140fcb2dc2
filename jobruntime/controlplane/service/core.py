"""The control plane's shared state and the checks every decision starts with.

``ControlPlane`` holds the signing key, the trust root, the repository, the known
principals and the attestation trust (AMD's chains, each purpose's policy). Who may
call which operation (``authorize``) and which runs a principal may see
(``load_run``) are decided here, so every transport applies the same rules.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jobruntime.attestation.certs import ProductChain
from jobruntime.controlplane.api import Purpose, ReleasePolicy, Role
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.controlplane.service.principals import Principal, token_digest
from jobruntime.controlplane.service.repository import Repository, RunRecord
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import utcnow


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

    def flush(self, cp: ControlPlane, now: datetime, every: timedelta) -> None:
        with self._lock:
            if not self._counts or now - self._since < every:
                return
            counts, self._counts, since = self._counts, {}, self._since
            self._since = now
        cp.audit(
            now,
            "auth.denied_unauthenticated",
            None,
            "anonymous",
            {"counts": counts, "since": since.isoformat()},
        )


@dataclass(frozen=True)
class AttestationTrust:
    """What evidence the KMS accepts: chains it trusts and each purpose's policy."""

    chains: list[ProductChain]
    allow_emulated: bool
    purposes: dict[Purpose, ReleasePolicy]
    nonce_ttl: timedelta = timedelta(seconds=60)


@dataclass
class ControlPlane:
    key: SigningKey
    trust_root: TrustRoot
    repo: Repository
    tokens: dict[str, Principal]
    trust: AttestationTrust
    denials: DenialCounter = field(default_factory=DenialCounter)
    # Where the trust root lives when owners may enrol keys into it (the emulator's
    # state); None: pinned, read-only.
    trust_root_path: Path | None = None

    def audit(
        self, at: datetime, event: str, run_id: str | None, actor: str, details: dict[str, Any]
    ) -> None:
        """One audit entry in its own transaction (refusals, which change nothing else)."""
        with self.repo.tx() as tx:
            tx.audit(at, event, run_id, actor, details)

    def known(self, token: str) -> bool:
        return token_digest(token) in self.tokens

    def authorize(
        self, token: str | None, roles: Collection[Role], method: str, route: str
    ) -> Principal:
        """The caller behind ``token``, if its role may call ``method`` on ``route``.

        1. A token: missing and unknown tokens are counted, not logged one by one.
        2. A role allowed here: a refusal is audited under the route's template (ours,
           never the caller's own path string).
        """
        if token is None:
            self.denials.count("missing token")
            raise ServiceError(401, "auth.missing", "a bearer token is required")
        principal = self.tokens.get(token_digest(token))
        if principal is None:
            self.denials.count("unknown token")
            raise ServiceError(401, "auth.invalid", "the bearer token is not valid")
        if principal.role not in roles:
            self.audit(
                utcnow(),
                "auth.denied",
                None,
                principal.name,
                {"path": route, "reason": f"role {principal.role.value} not allowed"},
            )
            raise ServiceError(
                403, "auth.forbidden", f"{principal.role.value} may not call {method} {route}"
            )
        return principal

    def load_run(self, run_id: str, who: Principal) -> RunRecord:
        """The run, if ``who`` may see it: its submitter, its owners, operators and pods."""
        with self.repo.read() as tx:
            run = tx.run(run_id)
        if run is None:
            raise ServiceError(404, "run.not_found", f"no run {run_id}")
        if who.role is Role.SUBMITTER and not self.may_see(run, who):
            raise ServiceError(403, "auth.forbidden", f"{who.name} did not submit {run_id}")
        if who.role is Role.OWNER and not self.may_see(run, who):
            raise ServiceError(403, "auth.forbidden", f"{who.name} is not an owner of {run_id}")
        return run

    @staticmethod
    def may_see(run: RunRecord, who: Principal) -> bool:
        """Submitters see their own runs, owners the runs naming their org, others all."""
        if who.role is Role.SUBMITTER:
            return run.submitter == who.name
        if who.role is Role.OWNER:
            return who.org is not None and who.org in run.owners
        return True
