"""SQLite persistence for the emulator, so a restart loses nothing.

One connection, one lock: the emulator is a development server and its
transactions are tiny. State changes and their audit entries commit together.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from jobruntime.controlplane import audit
from jobruntime.controlplane.api import AuditEntry, RunState
from jobruntime.signing.keys import SigningKey

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
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);
"""


class Store:
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
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def run(self, run_id: str) -> sqlite3.Row | None:
        rows = self.read("SELECT * FROM runs WHERE run_id = ?", run_id)
        return rows[0] if rows else None

    def approvals(self, run_id: str) -> list[sqlite3.Row]:
        return self.read("SELECT * FROM approvals WHERE run_id = ? ORDER BY owner, keyid", run_id)

    def audit(
        self,
        db: sqlite3.Connection,
        at: datetime,
        event: str,
        run_id: str | None,
        actor: str,
        details: dict[str, Any],
    ) -> AuditEntry:
        """Append one sealed entry inside the caller's transaction."""
        last = db.execute("SELECT entry FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = 1, audit.GENESIS
        if last is not None:
            head = json.loads(last["entry"])
            seq, prev = head["seq"] + 1, head["hash"]
        entry = audit.seal(audit.body(seq, at, event, run_id, actor, details, prev), self._key)
        db.execute("INSERT INTO audit (seq, entry) VALUES (?, ?)", (seq, entry.model_dump_json()))
        return entry

    def audit_page(self, after: int, limit: int) -> tuple[list[AuditEntry], int, str]:
        """Entries after ``after`` (at most ``limit``), and the whole log's count and head."""
        with self._lock:
            rows = list(
                self._db.execute(
                    "SELECT entry FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
                )
            )
            last = self._db.execute("SELECT entry FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        head = AuditEntry.model_validate_json(last["entry"]) if last else None
        page = [AuditEntry.model_validate_json(r["entry"]) for r in rows]
        return page, head.seq if head else 0, head.hash if head else audit.GENESIS

    def audit_entries(self, run_id: str | None = None) -> list[AuditEntry]:
        rows = self.read("SELECT entry FROM audit ORDER BY seq")
        entries = [AuditEntry.model_validate_json(r["entry"]) for r in rows]
        return [e for e in entries if run_id is None or e.run_id == run_id]

    def set_state(
        self,
        db: sqlite3.Connection,
        run_id: str,
        state: RunState,
        *,
        expect: Iterable[RunState],
        **cols: Any,
    ) -> None:
        """Compare-and-set: move ``run_id`` to ``state`` only from one of ``expect``.

        Run state only moves forward; a transition decided on a stale read (another
        request changed the run in between) fails here instead of undoing the change.
        """
        allowed = [s.value for s in expect]
        sets = ", ".join(["state = ?", *(f"{c} = ?" for c in cols)])
        marks = ", ".join("?" for _ in allowed)
        cur = db.execute(
            f"UPDATE runs SET {sets} WHERE run_id = ? AND state IN ({marks})",  # noqa: S608 - ours
            (state.value, *cols.values(), run_id, *allowed),
        )
        if cur.rowcount != 1:
            raise StateConflictError(
                f"{run_id} is no longer {' or '.join(allowed)}: not moved to {state.value}"
            )


class StateConflictError(Exception):
    """A run's state changed under a transition (the caller answers 409)."""


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
