"""The record of each dataset's latest version (rollback protection) and who may write it.

Readers compare the manifest they find with the version recorded here; writers
record the version they publish, which must follow the recorded one. Owners act on
datasets under their own keys; pods act, through their key agent's attested
session, on the datasets of their running run (reading inputs and outputs,
publishing outputs only, from the driver, signed by the session's bound key).

A URI belongs to the organisation that first declared it: the owner that first
published there, or the output owner of the first run approved to write there
(``reserve_outputs``, called when a run becomes approved). No one else publishes
there.
"""

from __future__ import annotations

import hmac

from jobruntime.controlplane.api import DatasetRef, DatasetVersion, PublishVersion, Role
from jobruntime.controlplane.service import sessions
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.controlplane.service.principals import Principal
from jobruntime.controlplane.service.repository import DatasetRecord, Tx
from jobruntime.errors import JobRuntimeError
from jobruntime.spec.models import JobRunSpec, utcnow
from jobruntime.storage.errors import StorageError
from jobruntime.storage.uri import require_canonical

READ_NEED = sessions.Need(purposes=("key-agent",), event="dataset.denied", running=True)
PUBLISH_NEED = sessions.Need(
    purposes=("key-agent",), roles=("driver",), event="dataset.denied", running=True
)


def signed_by_session(ref: PublishVersion, session: sessions.Session) -> None:
    """A pod's publish carries its key agent's signature over the version statement."""
    if ref.signature is None:
        raise ServiceError(403, "dataset.unsigned", "a pod's publish is signed by its session key")
    try:
        payload = session.verify(ref.signature)
    except JobRuntimeError:
        payload = b""
    if not hmac.compare_digest(payload, ref.statement(session.run_id)):
        raise ServiceError(403, "dataset.forged", "the publish is not signed by the attested key")


def _resolve(
    cp: ControlPlane, ref: DatasetRef, who: Principal, publish: bool
) -> tuple[str, str | None, str | None]:
    """(uri, and if a pod asks: the key id from its run's spec and the run id)."""
    if who.role is not Role.VERIFIER:
        if not ref.uri:
            raise ServiceError(400, "request.invalid", "name the dataset by its uri")
        try:
            return require_canonical(ref.uri), None, None
        except StorageError as exc:
            raise ServiceError(400, "dataset.uri_not_canonical", exc.message) from None
    if not ref.session or not ref.dataset:
        raise ServiceError(400, "request.invalid", "a pod names its session and dataset")
    # 1. The key agent's live session, of a running run; publishes from the driver only
    #    (the commit runs there: only the claiming pod's key agent is driver-role).
    try:
        session, run = sessions.require(
            cp,
            ref.session,
            PUBLISH_NEED if publish else READ_NEED,
            now=utcnow(),
            actor=who.name,
            dataset=ref.dataset,
        )
    except ServiceError as exc:
        if exc.code == "kms.pod_role":
            raise ServiceError(403, exc.code, "only the driver pod publishes outputs") from None
        raise
    # 2. A dataset the signed spec names: inputs and outputs to read, outputs to publish.
    spec = run.spec
    names = spec.outputs if publish else (*spec.inputs, *spec.outputs)
    found = next((d for d in names if d.name == ref.dataset), None)
    if found is None:
        raise ServiceError(
            403,
            "kms.dataset_not_in_spec",
            f"{ref.dataset} is not a dataset this run may {'write' if publish else 'read'}",
        )
    # 3. A publish is signed by the key the session's evidence bound.
    if publish:
        assert isinstance(ref, PublishVersion)
        signed_by_session(ref, session)
    return found.uri, found.key_id, session.run_id


def _owns(who: Principal, key_id: str) -> bool:
    return who.role is not Role.OWNER or key_id.split("/", 1)[0] == who.org


def latest(cp: ControlPlane, ref: DatasetRef, who: Principal) -> DatasetVersion:
    uri, _, _ = _resolve(cp, ref, who, publish=False)
    with cp.repo.read() as tx:
        row = tx.dataset(uri)
    if row is None or not _owns(who, row.key_id):
        raise ServiceError(404, "dataset.unknown", "no version is recorded for this dataset")
    return DatasetVersion(
        uri=uri,
        key_id=row.key_id,
        version=row.version,
        manifest_digest=row.manifest_digest,
        updated_at=row.updated_at,
    )


def publish(cp: ControlPlane, req: PublishVersion, who: Principal) -> DatasetVersion:
    """Record a new latest version: exactly one more than the recorded one."""
    if who.role is Role.OPERATOR:
        raise ServiceError(403, "auth.forbidden", "operators do not publish datasets")
    uri, spec_key, run_id = _resolve(cp, req, who, publish=True)
    key_id = spec_key or req.key_id
    if not key_id or not _owns(who, key_id):
        raise ServiceError(403, "auth.forbidden", f"{who.name} may not publish under this key")
    now = utcnow()
    org = key_id.split("/", 1)[0]
    with cp.repo.tx() as tx:
        # 4. The run is still running now, in the transaction that records the version.
        if run_id is not None:
            run = tx.run(run_id)
            assert run is not None
            fault = sessions.running_fault(run)
            if fault is not None:
                raise ServiceError(*fault)
        # 5. The URI is this organisation's (or no one's yet).
        _claim_uri(tx, uri, org)
        row = tx.dataset(uri)
        have = row.version if row else 0
        if row is not None and row.key_id != key_id:
            raise ServiceError(
                409, "dataset.key_changed", "the dataset is recorded under another key"
            )
        # 6. Exactly the next version.
        if req.version != have + 1:
            raise ServiceError(
                409,
                "dataset.version_conflict",
                f"version {req.version} does not follow recorded {have}",
            )
        record = DatasetRecord(uri, key_id, req.version, req.manifest_digest, now.isoformat())
        tx.record_version(record, run_id)
        tx.audit(
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


def _claim_uri(tx: Tx, uri: str, org: str) -> None:
    holder = tx.dataset_owner(uri)
    if holder is None:
        tx.set_dataset_owner(uri, org)
    elif holder != org:
        raise ServiceError(
            403, "dataset.owned_by_other", "the dataset belongs to another organisation"
        )


def reserve_outputs(tx: Tx, spec: JobRunSpec) -> str | None:
    """At approval: each output URI becomes its owner's, unless another org holds it.

    Returns why the run cannot be approved (an output at another organisation's URI),
    or None. Called in the transaction that moves the run to ``approved``.
    """
    for out in spec.outputs:
        org = out.key_id.split("/", 1)[0]
        holder = tx.dataset_owner(out.uri)
        if holder is not None and holder != org:
            return f"output {out.name} is at a URI another organisation holds"
    for out in spec.outputs:
        if tx.dataset_owner(out.uri) is None:
            tx.set_dataset_owner(out.uri, out.key_id.split("/", 1)[0])
    return None
