"""What a data owner reads and changes about itself: its runs, its audit entries, its keys.

- ``list_runs``: the runs a principal may see (``ControlPlane.may_see``), page by page.
- ``owner_audit``: the audit entries about the calling owner's organisation, filtered
  here, never by the client: an entry naming another organisation's key, dataset or
  approval is left out even when it belongs to a run both organisations are part of.
- ``enrol_key``: an owner adds an approval key to its own role of the trust root (never
  another organisation's, never a key already trusted for any role); the role's
  threshold is kept; the change is audited and used for approvals at once.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from jobruntime.controlplane.api import (
    AuditEntry,
    EnrolledKey,
    EnrolOwnerKey,
    OwnerAuditLog,
    OwnerKeyEnrolment,
    Role,
    RunList,
    RunSummary,
)
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.controlplane.service.principals import Principal
from jobruntime.controlplane.service.repository import RunRecord, Tx
from jobruntime.errors import JobRuntimeError
from jobruntime.signing import envelope
from jobruntime.signing.keys import key_id, load_public_pem
from jobruntime.signing.trustroot import Role as TrustRole
from jobruntime.signing.trustroot import TrustedKey, TrustRoot
from jobruntime.spec.codec import parse_model
from jobruntime.spec.models import utcnow

RUNS_PAGE = 200
AUDIT_SCAN = 1000  # entries read per owner-audit page, whatever their filter keeps


def _summary(run: RunRecord) -> RunSummary:
    spec = run.spec
    return RunSummary(
        run_id=run.run_id,
        job_id=spec.job_id,
        state=run.state,
        spec_digest=run.spec_digest,
        submitter=run.submitter,
        required_owners=run.owners,
        created_at=run.created_at,
    )


def list_runs(cp: ControlPlane, after: str | None, limit: int, who: Principal) -> RunList:
    """The runs ``who`` may see, oldest first; ``next`` is the cursor of the following page."""
    limit = min(limit, RUNS_PAGE)
    found: list[RunRecord] = []
    cursor = after
    with cp.repo.read() as tx:
        if after is not None and tx.run(after) is None:
            raise ServiceError(400, "request.invalid", "after names no run")
        while len(found) <= limit:
            page = tx.runs_page(cursor, RUNS_PAGE)
            found += [r for r in page if cp.may_see(r, who)]
            if len(page) < RUNS_PAGE:
                break
            cursor = page[-1].run_id
    more = len(found) > limit
    shown = found[:limit]
    return RunList(
        runs=[_summary(r) for r in shown], next=shown[-1].run_id if more and shown else None
    )


# --- the owner's audit entries ---------------------------------------------------------


def _orgs_named(details: dict[str, Any], tx: Tx, root: TrustRoot) -> set[str]:
    """The organisations an entry's details name: keys, key ids, owners, datasets."""
    orgs: set[str] = set()
    for field in ("owner", "org"):
        value = details.get(field)
        if isinstance(value, str):
            orgs.add(value)
    kid = details.get("key_id")
    if isinstance(kid, str) and "/" in kid:
        orgs.add(kid.split("/", 1)[0])
    keyids = details.get("keyids", [])
    for k in [*(keyids if isinstance(keyids, list) else []), details.get("keyid")]:
        owner = root.owner_of(k) if isinstance(k, str) else None
        if owner is not None:
            orgs.add(owner)
    uri = details.get("uri")
    if isinstance(uri, str):
        owner = tx.dataset_owner(uri)
        if owner is not None:
            orgs.add(owner)
    return orgs


def concerns(
    entry: AuditEntry, who: Principal, tx: Tx, root: TrustRoot, runs: dict[str, bool]
) -> bool:
    """Whether ``entry`` is about ``who``'s organisation and about no other one."""
    org = who.org
    if org is None:
        return False
    if entry.actor == who.name:
        return True  # the caller's own actions
    named = _orgs_named(entry.details, tx, root)
    if entry.actor.startswith("owner:"):  # another owner's action (its rejected approval)
        named.add(entry.actor.removeprefix("owner:"))
    if named - {org}:
        return False  # about another organisation (too), even on a shared run
    if org in named:
        return True
    if entry.run_id is None:
        return False
    if entry.run_id not in runs:
        run = tx.run(entry.run_id)
        runs[entry.run_id] = run is not None and org in run.owners
    return runs[entry.run_id]


def owner_audit(cp: ControlPlane, after: int, limit: int, who: Principal) -> OwnerAuditLog:
    """Entries after ``after`` that concern the caller's organisation (at most ``limit``)."""
    if who.role is not Role.OWNER or who.org is None:
        raise ServiceError(403, "auth.forbidden", "only a data owner reads its own audit view")
    kept: list[AuditEntry] = []
    runs: dict[str, bool] = {}
    cursor = after
    more = False
    with cp.repo.read() as tx:
        while True:
            page, count, _ = tx.audit_page(cursor, AUDIT_SCAN)
            for entry in page:
                cursor = entry.seq
                if concerns(entry, who, tx, cp.trust_root, runs):
                    kept.append(entry)
                    if len(kept) >= limit:
                        break
            if len(kept) >= limit:
                more = cursor < count
                break
            if not page or page[-1].seq >= count:
                break
    return OwnerAuditLog(org=who.org, entries=kept, next=cursor if more else None)


# --- enrolling an owner's approval key -------------------------------------------------


def enrol_key(cp: ControlPlane, req: EnrolOwnerKey, who: Principal) -> EnrolledKey:
    """Add a public key to the caller's own owner role; the role's threshold is unchanged."""
    org = who.org
    if who.role is not Role.OWNER or org is None:
        raise ServiceError(403, "auth.forbidden", "only a data owner enrols its approval keys")
    if cp.trust_root_path is None:
        raise ServiceError(409, "trustroot.read_only", "this control plane's trust root is pinned")
    now = utcnow()
    enrol, kid = _verified_enrolment(cp, req, org, who, now)
    if kid in cp.trust_root.by_id:
        cp.audit(now, "trustroot.enrol_refused", None, who.name, {"org": org, "keyid": kid})
        raise ServiceError(409, "trustroot.key_exists", f"key {kid[:16]}... is already trusted")
    with cp.repo.tx() as tx:  # one writer: the repository's lock serialises enrolments
        root = cp.trust_root
        if kid in root.by_id:  # enrolled by a concurrent request since the check above
            raise ServiceError(409, "trustroot.key_exists", f"key {kid[:16]}... is already trusted")
        entry = TrustedKey(
            keyid=kid,
            public_key_pem=enrol.public_key_pem,
            not_before=now - timedelta(minutes=5),
            not_after=now + timedelta(days=enrol.days),
        )
        old = root.owners.get(org)
        role = TrustRole(
            keyids=[*(old.keyids if old else []), kid], threshold=old.threshold if old else 1
        )
        new = TrustRoot.model_validate(
            {
                **root.model_dump(),
                "keys": [*(k.model_dump() for k in root.keys), entry.model_dump()],
                "owners": {**{n: r.model_dump() for n, r in root.owners.items()}, org: role},
            }
        )
        tmp = cp.trust_root_path.with_name(cp.trust_root_path.name + ".new")
        tmp.write_text(new.to_json())
        os.replace(tmp, cp.trust_root_path)
        cp.trust_root = new
        tx.audit(
            now,
            "trustroot.owner_key_enrolled",
            None,
            who.name,
            {
                "org": org,
                "keyid": kid,
                "threshold": role.threshold,
                "trust_root_digest": new.digest,
            },
        )
    return EnrolledKey(
        owner=org,
        keyid=kid,
        threshold=role.threshold,
        keyids=list(role.keyids),
        not_after=entry.not_after,
        trust_root_digest=new.digest,
    )


ENROLMENT_WINDOW = timedelta(minutes=10)


def _verified_enrolment(
    cp: ControlPlane, req: EnrolOwnerKey, org: str, who: Principal, now: datetime
) -> tuple[OwnerKeyEnrolment, str]:
    """Verify, then parse. An owner token alone adds no key: it would make the token as
    strong as an approval key.

    1. The envelope's shape and payload type.
    2. The org's current approval keys signed it, to the org's threshold (an org with no
       key yet gets its first one in the trust root from the control plane's operator).
    3. Only then the payload: this org, recent (a replayed enrolment is stale).
    4. The new key signed the same payload: its holder asked for it.
    """

    def refuse(status: int, code: str, message: str) -> ServiceError:
        cp.audit(now, "trustroot.enrol_refused", None, who.name, {"org": org, "reason": code})
        return ServiceError(status, code, message)

    try:
        env = envelope.from_json(req.envelope, envelope.ENROLMENT_TYPE, "key enrolment")
    except JobRuntimeError as exc:
        raise refuse(400, exc.code, exc.message) from None
    role = cp.trust_root.owners.get(org)
    if role is None:
        raise refuse(
            409,
            "trustroot.first_key",
            f"{org} has no approval key yet: its first is set in the trust root by the "
            "control plane's operator",
        )
    try:
        envelope.verify(env, cp.trust_root, role, f"owner {org}", now)
        enrol = parse_model(OwnerKeyEnrolment, env.payload, "key enrolment")
        public = load_public_pem(enrol.public_key_pem)
    except JobRuntimeError as exc:
        raise refuse(403, exc.code, exc.message) from None
    if enrol.org != org:
        raise refuse(403, "auth.forbidden", f"the enrolment is for {enrol.org}, not {org}")
    if not now - ENROLMENT_WINDOW <= enrol.at <= now + timedelta(minutes=5):
        raise refuse(409, "trustroot.enrolment_stale", "the enrolment was not signed just now")
    kid = key_id(public)
    candidate = TrustedKey(
        keyid=kid,
        public_key_pem=enrol.public_key_pem,
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
    )
    own = env.signatures.get(kid)
    if own is None or not candidate.verifies(own.signature, env.pae()):
        raise refuse(403, "trustroot.no_possession", "the new key did not sign its enrolment")
    return enrol, kid
