"""The control plane's record of each dataset's latest version (rollback protection).

Readers compare the manifest they find with the one recorded here; writers record
the version they publish, which must follow the recorded one. Owners act on
datasets under their own keys; pods act, through their attestation session, on
the datasets of their run (reading inputs and outputs, publishing outputs only).
"""

from __future__ import annotations

import hmac
import sqlite3

from fastapi import FastAPI

from jobruntime.controlplane.api import (
    API_PREFIX,
    DatasetRef,
    DatasetVersion,
    PublishVersion,
    Role,
    RunState,
)
from jobruntime.emulator import sessions
from jobruntime.emulator.context import ApiError, Context
from jobruntime.emulator.state import Principal
from jobruntime.errors import JobRuntimeError
from jobruntime.spec.models import JobRunSpec, utcnow
from jobruntime.storage.errors import StorageError
from jobruntime.storage.uri import require_canonical


def signed_by_session(ref: DatasetRef, session: sessions.Session) -> None:
    if not isinstance(ref, PublishVersion) or ref.signature is None:
        raise ApiError(403, "dataset.unsigned", "a pod's publish is signed by its session key")
    try:
        payload = session.verify(ref.signature)
    except JobRuntimeError:
        payload = b""
    if not hmac.compare_digest(payload, ref.statement(session.run_id)):
        raise ApiError(403, "dataset.forged", "the publish is not signed by the attested key")


def register(app: FastAPI, ctx: Context) -> None:
    store = ctx.store
    caller = ctx.dependency(Role.OWNER, Role.OPERATOR, Role.VERIFIER)

    def resolve(
        ref: DatasetRef, who: Principal, publish: bool
    ) -> tuple[str, str | None, str | None]:
        """(uri, and if a pod asks: the key id from its run's spec and the run id).

        A pod's publish must also carry its key agent's signature over the version
        (``PublishVersion.statement``): a leaked session token alone publishes nothing.
        """
        if who.role is Role.VERIFIER:
            if not ref.session or not ref.dataset:
                raise ApiError(400, "request.invalid", "a pod names its session and dataset")
            # A pod reads and publishes only through its key agent's attested session,
            # only while its run is running, only the datasets the signed spec names.
            session = sessions.require(
                ctx,
                ref.session,
                ("key-agent",),
                now=utcnow(),
                actor=who.name,
                event="dataset.denied",
                dataset=ref.dataset,
            )
            run = store.run(session.run_id)
            assert run is not None
            state = RunState(run["state"])
            if state is not RunState.CLAIMED:
                code = "kms.run_cancelled" if state is RunState.CANCELLED else "kms.run_finished"
                raise ApiError(409, code, f"{run['run_id']} is {state.value}, not running")
            if publish and session.role != "driver":
                # Outputs are published by the commit on the driver: only the claiming
                # pod's key agent (the only driver-role one) records a new version.
                raise ApiError(403, "kms.pod_role", "only the driver pod publishes outputs")
            spec = JobRunSpec.model_validate_json(run["spec"])
            names = spec.outputs if publish else (*spec.inputs, *spec.outputs)
            found = next((d for d in names if d.name == ref.dataset), None)
            if found is None:
                raise ApiError(
                    403,
                    "kms.dataset_not_in_spec",
                    f"{ref.dataset} is not a dataset this run may {'write' if publish else 'read'}",
                )
            if publish:
                signed_by_session(ref, session)
            return found.uri, found.key_id, session.run_id
        if not ref.uri:
            raise ApiError(400, "request.invalid", "name the dataset by its uri")
        try:
            return require_canonical(ref.uri), None, None
        except StorageError as exc:
            raise ApiError(400, "dataset.uri_not_canonical", exc.message) from None

    def current(db: sqlite3.Connection | None, uri: str) -> sqlite3.Row | None:
        if db is None:
            rows = store.read("SELECT * FROM dataset_versions WHERE uri = ?", uri)
            return rows[0] if rows else None
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM dataset_versions WHERE uri = ?", (uri,)
        ).fetchone()
        return row

    def owns(who: Principal, key_id: str) -> bool:
        return who.role is not Role.OWNER or key_id.split("/", 1)[0] == who.org

    @app.post(f"{API_PREFIX}/datasets/latest", tags=["datasets"])
    def latest(ref: DatasetRef, who: Principal = caller) -> DatasetVersion:
        uri, _, _ = resolve(ref, who, publish=False)
        row = current(None, uri)
        if row is None or not owns(who, row["key_id"]):
            raise ApiError(404, "dataset.unknown", "no version is recorded for this dataset")
        return DatasetVersion(
            uri=uri,
            key_id=row["key_id"],
            version=row["version"],
            manifest_digest=row["manifest_digest"],
            updated_at=row["updated_at"],
        )

    @app.post(f"{API_PREFIX}/datasets/publish", tags=["datasets"])
    def publish(req: PublishVersion, who: Principal = caller) -> DatasetVersion:
        """Record a new latest version: exactly one more than the recorded one."""
        if who.role is Role.OPERATOR:
            raise ApiError(403, "auth.forbidden", "operators do not publish datasets")
        uri, spec_key, run_id = resolve(req, who, publish=True)
        key_id = spec_key or req.key_id
        if not key_id or not owns(who, key_id):
            raise ApiError(403, "auth.forbidden", f"{who.name} may not publish under this key")
        now = utcnow()
        org = key_id.split("/", 1)[0]
        with store.tx() as db:
            # A URI belongs to the organisation that first published there: nobody else
            # can plant versions where another organisation's run will write.
            holder = db.execute("SELECT org FROM dataset_owners WHERE uri = ?", (uri,)).fetchone()
            if holder is not None and holder["org"] != org:
                raise ApiError(
                    403, "dataset.owned_by_other", "the dataset belongs to another organisation"
                )
            if holder is None:
                db.execute("INSERT INTO dataset_owners VALUES (?, ?)", (uri, org))
            row = current(db, uri)
            have = row["version"] if row else 0
            if row is not None and row["key_id"] != key_id:
                raise ApiError(
                    409, "dataset.key_changed", "the dataset is recorded under another key"
                )
            if req.version != have + 1:
                raise ApiError(
                    409,
                    "dataset.version_conflict",
                    f"version {req.version} does not follow recorded {have}",
                )
            db.execute(
                "INSERT OR REPLACE INTO dataset_versions VALUES (?, ?, ?, ?, ?)",
                (uri, key_id, req.version, req.manifest_digest, now.isoformat()),
            )
            # Which run published which version: a run's outcome names its own.
            db.execute(
                "INSERT INTO dataset_publishes VALUES (?, ?, ?, ?)",
                (uri, req.version, req.manifest_digest, run_id),
            )
            store.audit(
                db,
                now,
                "dataset.published",
                run_id,
                who.name,
                {"uri": uri, "version": req.version, "manifest": req.manifest_digest},
            )
        return DatasetVersion(
            uri=uri,
            key_id=key_id,
            version=req.version,
            manifest_digest=req.manifest_digest,
            updated_at=now,
        )
