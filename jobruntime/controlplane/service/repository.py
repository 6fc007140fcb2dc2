"""The control plane's repository: every SQL statement of the service, and nothing else.

The service decides; the repository stores. Decisions that depend on stored state
are made inside one ``Repository.tx()`` on fresh reads, and every change of a run's
state is a compare-and-set (``Tx.set_state``), so two requests can never both win.

Portable SQL only (no SQLite-specific upserts or types beyond TEXT, INTEGER, REAL,
BLOB): the same schema runs on PostgreSQL with BYTEA for BLOB and one connection
per transaction at SERIALIZABLE or with ``SELECT ... FOR UPDATE`` on the run's row
(see docs/control-plane.md). State changes and their audit entries commit together.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jobruntime.controlplane import audit
from jobruntime.controlplane.api import AuditEntry, RunState
from jobruntime.controlplane.service.errors import StateConflictError
from jobruntime.signing.keys import SigningKey
from jobruntime.spec.models import JobRunSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    submitter TEXT NOT NULL,
    spec TEXT NOT NULL,
    envelope TEXT NOT NULL,
    spec_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    claim_id TEXT,
    claimed_at TEXT,
    claim_receipt TEXT,
    claim_pod TEXT,
    cancelled_at TEXT,
    cancel_reason TEXT,
    finished_at TEXT,
    outcome_reason TEXT,
    outputs TEXT
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT NOT NULL,
    keyid TEXT NOT NULL,
    owner TEXT NOT NULL,
    envelope TEXT NOT NULL,
    PRIMARY KEY (run_id, keyid)
);
CREATE TABLE IF NOT EXISTS kms_keys (
    key_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    material BLOB NOT NULL,
    policy TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kms_nonces (
    nonce TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE IF NOT EXISTS kms_sessions (
    token_hash TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    pod_id TEXT NOT NULL,
    role TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    evidence_kind TEXT NOT NULL,
    product TEXT NOT NULL,
    report BLOB NOT NULL,
    expires_at TEXT NOT NULL,
    UNIQUE (run_id, pod_id, purpose)
);
CREATE TABLE IF NOT EXISTS run_pods (
    run_id TEXT NOT NULL,
    pod_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (run_id, pod_id)
);
CREATE TABLE IF NOT EXISTS dataset_versions (
    uri TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_owners (
    uri TEXT PRIMARY KEY,
    org TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_publishes (
    uri TEXT NOT NULL,
    version INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    run_id TEXT,
    PRIMARY KEY (uri, version)
);
CREATE TABLE IF NOT EXISTS liveness (
    run_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_at TEXT NOT NULL,
    interval REAL NOT NULL,
    progress TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_refusals (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    refusal TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS run_secrets (
    run_id TEXT PRIMARY KEY,
    material BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``: the signed spec as issued and where the run stands."""

    run_id: str
    submitter: str
    spec_json: str
    envelope: str
    spec_digest: str
    state: RunState
    created_at: str
    claim_id: str | None
    claimed_at: str | None
    claim_receipt: str | None
    claim_pod: str | None
    cancelled_at: str | None
    cancel_reason: str | None
    finished_at: str | None
    outcome_reason: str | None
    outputs: str | None

    @property
    def spec(self) -> JobRunSpec:
        """The spec the control plane itself issued and stored (not untrusted input)."""
        return JobRunSpec.model_validate_json(self.spec_json)

    @property
    def owners(self) -> list[str]:
        return list(json.loads(self.spec_json)["approval_policy"]["required_owners"])

    @classmethod
    def of(cls, row: sqlite3.Row) -> RunRecord:
        values = dict(row)
        values["spec_json"] = values.pop("spec")
        values["state"] = RunState(values["state"])
        return cls(**values)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    owner: str
    material: bytes
    policy: str
    created_at: str


@dataclass(frozen=True)
class NonceRecord:
    run_id: str
    expires_at: datetime
    used: bool


@dataclass(frozen=True)
class SessionRecord:
    token_hash: str
    run_id: str
    purpose: str
    pod_id: str
    role: str
    public_jwk: str
    evidence_kind: str
    product: str
    report: bytes
    expires_at: str


@dataclass(frozen=True)
class DatasetRecord:
    uri: str
    key_id: str
    version: int
    manifest_digest: str
    updated_at: str


@dataclass(frozen=True)
class Liveness:
    run_id: str
    last_seq: int
    last_at: datetime
    interval: float
    progress: str


class Tx:
    """The statements one transaction may run; only ``Repository.tx`` makes one."""

    def __init__(self, db: sqlite3.Connection, key: SigningKey) -> None:
        self._db, self._key = db, key

    # --- runs ----------------------------------------------------------------------

    def insert_run(self, run: RunRecord) -> None:
        self._db.execute(
            "INSERT INTO runs (run_id, submitter, spec, envelope, spec_digest, state,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.submitter,
                run.spec_json,
                run.envelope,
                run.spec_digest,
                run.state.value,
                run.created_at,
            ),
        )

    def run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return RunRecord.of(row) if row else None

    def runs_page(self, after: str | None, limit: int) -> list[RunRecord]:
        """Up to ``limit`` runs in creation order, after the run ``after`` (a cursor)."""
        if after is None:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY created_at, run_id LIMIT ?", (limit,)
            )
        else:
            rows = self._db.execute(
                "SELECT r.* FROM runs r, runs c WHERE c.run_id = ?"
                " AND (r.created_at > c.created_at"
                " OR (r.created_at = c.created_at AND r.run_id > c.run_id))"
                " ORDER BY r.created_at, r.run_id LIMIT ?",
                (after, limit),
            )
        return [RunRecord.of(r) for r in rows]

    def replace_spec(
        self, run_id: str, spec_json: str, envelope: str, digest: str, *, expect_digest: str
    ) -> bool:
        """Re-signed spec, only while pending, unchanged since read, and not approved by anyone."""
        cur = self._db.execute(
            "UPDATE runs SET spec = ?, envelope = ?, spec_digest = ? WHERE run_id = ?"
            " AND state = ? AND spec_digest = ?"
            " AND NOT EXISTS (SELECT 1 FROM approvals WHERE run_id = ?)",
            (
                spec_json,
                envelope,
                digest,
                run_id,
                RunState.PENDING_APPROVAL.value,
                expect_digest,
                run_id,
            ),
        )
        return cur.rowcount == 1

    def set_state(
        self, run_id: str, state: RunState, *, expect: Iterable[RunState], **cols: Any
    ) -> None:
        """Compare-and-set: move ``run_id`` to ``state`` only from one of ``expect``.

        Run state only moves forward; a transition decided on a stale read (another
        request changed the run in between) fails here instead of undoing the change.
        """
        allowed = [s.value for s in expect]
        unknown = set(cols) - set(RunRecord.__dataclass_fields__)
        if unknown:
            raise ValueError(f"no run columns {sorted(unknown)}")
        sets = ", ".join(["state = ?", *(f"{c} = ?" for c in cols)])
        marks = ", ".join("?" for _ in allowed)
        cur = self._db.execute(
            f"UPDATE runs SET {sets} WHERE run_id = ? AND state IN ({marks})",  # noqa: S608 - ours
            (state.value, *cols.values(), run_id, *allowed),
        )
        if cur.rowcount != 1:
            raise StateConflictError(
                f"{run_id} is no longer {' or '.join(allowed)}: not moved to {state.value}"
            )

    def claimed_liveness(self) -> list[Liveness]:
        rows = self._db.execute(
            "SELECT l.* FROM liveness l JOIN runs r ON r.run_id = l.run_id WHERE r.state = ?",
            (RunState.CLAIMED.value,),
        ).fetchall()
        return [_liveness(r) for r in rows]

    # --- approvals and the run's pods ----------------------------------------------

    def add_approval(self, run_id: str, keyid: str, owner: str, signed: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO approvals VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, keyid, owner, json.dumps(signed, sort_keys=True)),
        )

    def approvals(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT envelope FROM approvals WHERE run_id = ? ORDER BY owner, keyid", (run_id,)
        )
        return [json.loads(r["envelope"]) for r in rows]

    def approvers(self, run_id: str) -> list[str]:
        """The owner of each accepted approval key (one entry per key)."""
        rows = self._db.execute("SELECT owner FROM approvals WHERE run_id = ?", (run_id,))
        return [str(r["owner"]) for r in rows]

    def add_pod(self, run_id: str, pod_id: str, role: str) -> None:
        self._db.execute(
            "INSERT INTO run_pods VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (run_id, pod_id, role)
        )

    def pod_role(self, run_id: str, pod_id: str) -> str | None:
        row = self._db.execute(
            "SELECT role FROM run_pods WHERE run_id = ? AND pod_id = ?", (run_id, pod_id)
        ).fetchone()
        return str(row["role"]) if row else None

    # --- keys, nonces, sessions ----------------------------------------------------

    def key(self, key_id: str) -> KeyRecord | None:
        row = self._db.execute("SELECT * FROM kms_keys WHERE key_id = ?", (key_id,)).fetchone()
        return KeyRecord(**{**dict(row), "material": bytes(row["material"])}) if row else None

    def keys_of(self, org: str | None) -> list[KeyRecord]:
        """Every key of ``org`` (every key when None), by id."""
        if org is None:
            rows = self._db.execute("SELECT * FROM kms_keys ORDER BY key_id")
        else:
            rows = self._db.execute(
                "SELECT * FROM kms_keys WHERE owner = ? ORDER BY key_id", (org,)
            )
        return [KeyRecord(**{**dict(r), "material": bytes(r["material"])}) for r in rows]

    def set_key_policy(self, key_id: str, policy: str) -> None:
        self._db.execute("UPDATE kms_keys SET policy = ? WHERE key_id = ?", (policy, key_id))

    def insert_key(self, key: KeyRecord) -> None:
        self._db.execute(
            "INSERT INTO kms_keys VALUES (?, ?, ?, ?, ?)",
            (key.key_id, key.owner, key.material, key.policy, key.created_at),
        )

    def open_nonces(self, run_id: str, now: datetime) -> int:
        """Drop expired nonces; the number this run has unused."""
        self._db.execute("DELETE FROM kms_nonces WHERE expires_at < ?", (now.isoformat(),))
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM kms_nonces WHERE run_id = ? AND used_at IS NULL", (run_id,)
        ).fetchone()
        return int(count)

    def insert_nonce(self, nonce: str, run_id: str, expires: datetime) -> None:
        self._db.execute(
            "INSERT INTO kms_nonces VALUES (?, ?, ?, NULL)", (nonce, run_id, expires.isoformat())
        )

    def nonce(self, nonce: str) -> NonceRecord | None:
        row = self._db.execute("SELECT * FROM kms_nonces WHERE nonce = ?", (nonce,)).fetchone()
        if row is None:
            return None
        return NonceRecord(
            row["run_id"], datetime.fromisoformat(row["expires_at"]), row["used_at"] is not None
        )

    def use_nonce(self, nonce: str, now: datetime) -> None:
        self._db.execute(
            "UPDATE kms_nonces SET used_at = ? WHERE nonce = ?", (now.isoformat(), nonce)
        )

    def insert_session(self, s: SessionRecord) -> bool:
        """False when the pod already has a session of this purpose for this run."""
        try:
            self._db.execute(
                "INSERT INTO kms_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    s.token_hash,
                    s.run_id,
                    s.purpose,
                    s.pod_id,
                    s.role,
                    s.public_jwk,
                    s.evidence_kind,
                    s.product,
                    s.report,
                    s.expires_at,
                ),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def session(self, token_hash: str) -> SessionRecord | None:
        row = self._db.execute(
            "SELECT * FROM kms_sessions WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return SessionRecord(**{**dict(row), "report": bytes(row["report"])}) if row else None

    def refusals(self, run_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT refusal FROM run_refusals WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [str(r["refusal"]) for r in rows]

    def add_refusal(self, run_id: str, seq: int, refusal: str) -> None:
        self._db.execute("INSERT INTO run_refusals VALUES (?, ?, ?)", (run_id, seq, refusal))

    def run_secret(self, run_id: str, fresh: bytes) -> bytes:
        """The run's Spark secret: ``fresh`` if the run had none, else the one it has."""
        self._db.execute(
            "INSERT INTO run_secrets VALUES (?, ?) ON CONFLICT DO NOTHING", (run_id, fresh)
        )
        row = self._db.execute(
            "SELECT material FROM run_secrets WHERE run_id = ?", (run_id,)
        ).fetchone()
        return bytes(row["material"])

    # --- datasets ------------------------------------------------------------------

    def dataset(self, uri: str) -> DatasetRecord | None:
        row = self._db.execute("SELECT * FROM dataset_versions WHERE uri = ?", (uri,)).fetchone()
        return DatasetRecord(**dict(row)) if row else None

    def dataset_owner(self, uri: str) -> str | None:
        row = self._db.execute("SELECT org FROM dataset_owners WHERE uri = ?", (uri,)).fetchone()
        return str(row["org"]) if row else None

    def set_dataset_owner(self, uri: str, org: str) -> None:
        self._db.execute("INSERT INTO dataset_owners VALUES (?, ?)", (uri, org))

    def record_version(self, d: DatasetRecord, run_id: str | None) -> None:
        """The new latest version, and which run (if any) published it."""
        self._db.execute("DELETE FROM dataset_versions WHERE uri = ?", (d.uri,))
        self._db.execute(
            "INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?)",
            (d.uri, d.key_id, d.version, d.manifest_digest, d.updated_at),
        )
        self._db.execute(
            "INSERT INTO dataset_publishes VALUES (?, ?, ?, ?)",
            (d.uri, d.version, d.manifest_digest, run_id),
        )

    def last_publish(self, uri: str, run_id: str) -> tuple[int, str] | None:
        """(version, manifest digest) of the last version ``run_id`` published at ``uri``."""
        row = self._db.execute(
            "SELECT version, manifest_digest FROM dataset_publishes"
            " WHERE uri = ? AND run_id = ? ORDER BY version DESC LIMIT 1",
            (uri, run_id),
        ).fetchone()
        return (int(row["version"]), str(row["manifest_digest"])) if row else None

    # --- liveness ------------------------------------------------------------------

    def liveness(self, run_id: str) -> Liveness | None:
        row = self._db.execute("SELECT * FROM liveness WHERE run_id = ?", (run_id,)).fetchone()
        return _liveness(row) if row else None

    def record_liveness(self, live: Liveness) -> None:
        self._db.execute("DELETE FROM liveness WHERE run_id = ?", (live.run_id,))
        self._db.execute(
            "INSERT INTO liveness VALUES (?, ?, ?, ?, ?)",
            (live.run_id, live.last_seq, live.last_at.isoformat(), live.interval, live.progress),
        )

    # --- audit ---------------------------------------------------------------------

    def audit(
        self,
        at: datetime,
        event: str,
        run_id: str | None,
        actor: str,
        details: dict[str, Any],
    ) -> AuditEntry:
        """Append one sealed entry, chained to the last, inside this transaction."""
        last = self._db.execute("SELECT entry FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = 1, audit.GENESIS
        if last is not None:
            head = json.loads(last["entry"])
            seq, prev = head["seq"] + 1, head["hash"]
        entry = audit.seal(audit.body(seq, at, event, run_id, actor, details, prev), self._key)
        self._db.execute(
            "INSERT INTO audit (seq, entry) VALUES (?, ?)", (seq, entry.model_dump_json())
        )
        return entry

    def audit_page(self, after: int, limit: int) -> tuple[list[AuditEntry], int, str]:
        """Entries after ``after`` (at most ``limit``), and the whole log's count and head."""
        rows = list(
            self._db.execute(
                "SELECT entry FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
        )
        last = self._db.execute("SELECT entry FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        head = AuditEntry.model_validate_json(last["entry"]) if last else None
        page = [AuditEntry.model_validate_json(r["entry"]) for r in rows]
        return page, head.seq if head else 0, head.hash if head else audit.GENESIS


def _liveness(row: sqlite3.Row) -> Liveness:
    return Liveness(
        row["run_id"],
        int(row["last_seq"]),
        datetime.fromisoformat(row["last_at"]),
        float(row["interval"]),
        row["progress"],
    )


class Repository:
    """SQLite behind one lock: the emulator's store (a development server, tiny transactions)."""

    def __init__(self, path: Path, signing_key: SigningKey) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if f.exists():
                f.chmod(0o600)  # it holds every master key
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        _migrate(self._db)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._key = signing_key

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """One transaction: everything in it commits together or not at all."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db, self._key)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A consistent read (the same statements; the caller writes nothing)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield Tx(self._db, self._key)
            finally:
                self._db.execute("ROLLBACK")


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a state directory of an earlier version up to this schema.

    Sessions of the earlier schema named no pod or role: they are dropped (a pod
    attests again); runs gain the column that records the claiming pod.
    """

    def columns(table: str) -> set[str]:
        return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}

    if columns("kms_sessions") and "pod_id" not in columns("kms_sessions"):
        db.execute("DROP TABLE kms_sessions")
    if columns("runs") and "claim_pod" not in columns("runs"):
        db.execute("ALTER TABLE runs ADD COLUMN claim_pod TEXT")
