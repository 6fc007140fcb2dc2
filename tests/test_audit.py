"""The signed, hash-chained audit log: verification, every kind of tampering, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from jobruntime.controlplane import audit
from jobruntime.controlplane.api import AuditEntry
from jobruntime.controlplane.audit import verify_chain
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.errors import AuditChainError
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import Role, TrustedKey, TrustRoot
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from tests.conftest import Runs
from tests.sessions import TestPod

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def entries(emulator: EmulatorProcess, runs: Runs) -> list[AuditEntry]:
    """The log after a submit, approvals, a claim, a cancel and a refused call."""
    claimed = runs.approved()
    assert TestPod(emulator, claimed).claim().status_code == 200
    with emulator.client("submitter") as c:
        c.cancel(runs.submit(), "no longer needed")
    requests.get(  # refused: the verifier's role may not read the log
        f"{emulator.url}/v1/audit",
        headers={"Authorization": f"Bearer {emulator.token('verifier')}"},
        timeout=10,
    )
    with emulator.client("operator") as c:
        log = c.audit().entries
    assert len(log) >= 8
    return log


@pytest.fixture
def root(emulator: EmulatorProcess) -> TrustRoot:
    return TrustRoot.load(emulator.trust_root)


def body_of(e: AuditEntry) -> dict[str, object]:
    return audit.body(e.seq, e.at, e.event, e.run_id, e.actor, e.details, e.prev_hash)


def chain_error(entries: list[AuditEntry], root: TrustRoot) -> AuditChainError:
    with pytest.raises(AuditChainError) as info:
        verify_chain(entries, root)
    assert info.value.code == "audit.chain"
    assert info.value.exit_code == 30
    return info.value


def test_intact_chain_returns_the_head(entries: list[AuditEntry], root: TrustRoot) -> None:
    assert verify_chain(entries, root) == entries[-1].hash
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    events = {e.event for e in entries}
    assert {
        "run.submitted",
        "run.approved",
        "run.fully_approved",
        "run.claimed",
        "run.cancelled",
        "auth.denied",
    } <= events


def test_empty_chain_is_genesis(root: TrustRoot) -> None:
    assert verify_chain([], root) == audit.GENESIS


def test_changed_details(entries: list[AuditEntry], root: TrustRoot) -> None:
    i = 2
    tampered = list(entries)
    tampered[i] = entries[i].model_copy(update={"details": {**entries[i].details, "x": 1}})
    err = chain_error(tampered, root)
    assert err.message == f"entry {i + 1} was altered: its hash does not match"


def test_changed_details_with_recomputed_hash(entries: list[AuditEntry], root: TrustRoot) -> None:
    """An attacker can redo the hash but not the signature."""
    last = entries[-1]
    changed = {**body_of(last), "actor": "someone-else"}
    forged = last.model_copy(
        update={
            "actor": "someone-else",
            "hash": hashlib.sha256(canonical(changed)).hexdigest(),
        }
    )
    err = chain_error([*entries[:-1], forged], root)
    assert err.message == f"entry {last.seq} has a bad signature"


def test_removed_middle_entry(entries: list[AuditEntry], root: TrustRoot) -> None:
    i = len(entries) // 2
    err = chain_error(entries[:i] + entries[i + 1 :], root)
    assert err.message == f"entry {i + 1} has seq {i + 2}: entries missing or reordered"


def test_reordered_entries(entries: list[AuditEntry], root: TrustRoot) -> None:
    i = 3
    swapped = list(entries)
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    err = chain_error(swapped, root)
    assert err.message == f"entry {i + 1} has seq {i + 2}: entries missing or reordered"


def test_renumbered_after_removal(entries: list[AuditEntry], root: TrustRoot) -> None:
    """Removing an entry and renumbering the rest still breaks the links."""
    i = 3
    kept = entries[:i] + entries[i + 1 :]
    renumbered = [e.model_copy(update={"seq": n}) for n, e in enumerate(kept, 1)]
    err = chain_error(renumbered, root)
    assert err.message == f"entry {i + 1} does not link to entry {i}"


def test_changed_prev_hash(entries: list[AuditEntry], root: TrustRoot) -> None:
    i = 4
    tampered = list(entries)
    tampered[i] = entries[i].model_copy(update={"prev_hash": "ab" * 32})
    err = chain_error(tampered, root)
    assert err.message == f"entry {i + 1} does not link to entry {i}"


def test_first_entry_must_link_to_genesis(entries: list[AuditEntry], root: TrustRoot) -> None:
    err = chain_error(entries[1:], root)
    assert err.message == "entry 1 has seq 2: entries missing or reordered"


def test_resealed_by_another_key(entries: list[AuditEntry], root: TrustRoot) -> None:
    i = 2
    stranger = SigningKey.generate()
    resealed = audit.seal(body_of(entries[i]), stranger)
    assert resealed.hash == entries[i].hash  # the chain itself is intact
    tampered = list(entries)
    tampered[i] = resealed
    err = chain_error(tampered, root)
    assert err.message == f"entry {i + 1} is signed by a key that is not a control-plane key"


def test_control_plane_keyid_with_a_foreign_signature(
    entries: list[AuditEntry], root: TrustRoot
) -> None:
    i = 2
    stranger = audit.seal(body_of(entries[i]), SigningKey.generate())
    tampered = list(entries)
    tampered[i] = entries[i].model_copy(update={"sig": stranger.sig})
    err = chain_error(tampered, root)
    assert err.message == f"entry {i + 1} has a bad signature"


def test_trust_root_without_the_control_plane_key(
    entries: list[AuditEntry], root: TrustRoot
) -> None:
    other = SigningKey.generate()
    now = utcnow()
    trusted = TrustedKey(
        keyid=other.keyid,
        public_key_pem=other.public_pem,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=1),
    )
    owner_ids = {k for r in root.owners.values() for k in r.keyids}
    foreign = TrustRoot(
        keys=[k for k in root.keys if k.keyid in owner_ids] + [trusted],
        control_plane=Role(keyids=[other.keyid]),
        owners=dict(root.owners),
    )
    err = chain_error(entries, foreign)
    assert err.message == "entry 1 is signed by a key that is not a control-plane key"


def test_control_plane_key_as_an_owner_key_is_not_enough(
    entries: list[AuditEntry], root: TrustRoot
) -> None:
    """The key is in the trust root, but in the wrong role."""
    cp = root.control_plane.keyids[0]
    other = SigningKey.generate()
    now = utcnow()
    trusted = TrustedKey(
        keyid=other.keyid,
        public_key_pem=other.public_pem,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=1),
    )
    swapped = TrustRoot(
        keys=[*root.keys, trusted],
        control_plane=Role(keyids=[other.keyid]),
        owners={**root.owners, "org-z": Role(keyids=[cp])},
    )
    err = chain_error(entries, swapped)
    assert err.message == "entry 1 is signed by a key that is not a control-plane key"


@pytest.mark.parametrize("change", ["revoked", "expired"])
def test_control_plane_key_not_valid(
    entries: list[AuditEntry], root: TrustRoot, change: str
) -> None:
    cp = root.control_plane.keyids[0]
    key = root.by_id[cp]
    if change == "revoked":
        replaced = key.model_copy(update={"revoked": True})
    else:
        first = entries[0].at
        replaced = TrustedKey(
            keyid=key.keyid,
            public_key_pem=key.public_key_pem,
            not_before=first - timedelta(days=2),
            not_after=first - timedelta(days=1),
        )
    changed = TrustRoot(
        keys=[replaced if k.keyid == cp else k for k in root.keys],
        control_plane=root.control_plane,
        owners=dict(root.owners),
    )
    err = chain_error(entries, changed)
    assert err.message.startswith("entry 1 is signed by a key not valid at ")


# --- the command line ---------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOB")}
    env.pop("JOBRUNTIME_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_cli_verifies_the_live_log(emulator: EmulatorProcess, entries: list[AuditEntry]) -> None:
    result = cli(
        "audit",
        "verify",
        "--trust-root",
        str(emulator.trust_root),
        "--emulator-state",
        str(emulator.state),
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("audit chain ok: ")
    count = int(line.split("ok: ")[1].split(" entries")[0])
    head = line.rsplit("head sha256:", 1)[1]
    assert count >= len(entries)
    with emulator.client("operator") as c:
        log = c.audit().entries
    assert log[count - 1].hash == head


def test_cli_export_then_tampered_file_fails(
    emulator: EmulatorProcess, entries: list[AuditEntry], tmp_path: Path
) -> None:
    exported = cli("audit", "export", "--emulator-state", str(emulator.state))
    assert exported.returncode == 0, exported.stderr
    log = tmp_path / "audit.json"
    log.write_text(exported.stdout)

    ok = cli("audit", "verify", "--trust-root", str(emulator.trust_root), "--file", str(log))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit chain ok: ")

    doc = json.loads(log.read_text())
    doc["entries"][1]["details"]["injected"] = "yes"
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    result = cli("audit", "verify", "--trust-root", str(emulator.trust_root), "--file", str(bad))
    assert result.returncode == 30
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr == (
        "jobruntime: audit.chain: entry 2 was altered: its hash does not match\n"
    )


def test_cli_verify_with_a_foreign_trust_root_fails(
    emulator: EmulatorProcess, entries: list[AuditEntry], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    init = cli("emulator", "init", "--state", str(other), "--owner", "org-a")
    assert init.returncode == 0, init.stderr
    result = cli(
        "audit",
        "verify",
        "--trust-root",
        str(other / "trust-root.json"),
        "--emulator-state",
        str(emulator.state),
    )
    assert result.returncode == 30
    assert result.stderr == (
        "jobruntime: audit.chain: entry 1 is signed by a key that is not a control-plane key\n"
    )


@pytest.mark.parametrize(
    "content",
    ['{"entries": [{"seq": "x"}]}', "not json", None],
    ids=["bad-entry", "not-json", "missing"],
)
def test_cli_verify_of_a_bad_file_is_a_typed_error(
    emulator: EmulatorProcess, tmp_path: Path, content: str | None
) -> None:
    bad = tmp_path / "not-a-log.json"
    if content is not None:
        bad.write_text(content)
    result = cli("audit", "verify", "--trust-root", str(emulator.trust_root), "--file", str(bad))
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert "internal" not in result.stderr
    assert result.returncode in (2, 30)


def test_entries_dropped_from_the_end_of_an_export_are_caught(
    emulator: EmulatorProcess, entries: list[AuditEntry], tmp_path: Path
) -> None:
    exported = cli("audit", "export", "--emulator-state", str(emulator.state))
    doc = json.loads(exported.stdout)
    doc["entries"] = doc["entries"][:-2]  # a shorter, still perfectly chained log
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(doc))
    result = cli("audit", "verify", "--trust-root", str(emulator.trust_root), "--file", str(cut))
    assert result.returncode == 30
    assert "entries were removed from its end" in result.stderr
    # Without the checkpoint, the end cannot be checked: refused, not accepted.
    del doc["checkpoint"]
    cut.write_text(json.dumps(doc))
    result = cli("audit", "verify", "--trust-root", str(emulator.trust_root), "--file", str(cut))
    assert (result.returncode, "carries no signed checkpoint" in result.stderr) == (30, True)


def test_a_rolled_back_live_log_fails_against_a_saved_checkpoint(tmp_path: Path) -> None:
    """Entries deleted from the database before a restart: the answer's fresh checkpoint
    matches the shorter log, but the checkpoint the verifier saved earlier does not."""
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        runs = Runs(emu, tmp_path)
        runs.approved()
        saved = tmp_path / "checkpoint.json"
        verify = ["audit", "verify", "--trust-root", str(emu.trust_root)]
        state = ["--emulator-state", str(emu.state)]
        first = cli(*verify, *state, "--save-checkpoint", str(saved))
        assert first.returncode == 0, first.stderr
        runs.approved()  # the log grows: still extends the saved checkpoint
        grown = cli(*verify, *state, "--checkpoint", str(saved))
        assert grown.returncode == 0, grown.stderr
        assert "extends the saved checkpoint" in grown.stdout
        emu.stop()
        db = sqlite3.connect(emu.state / "emulator.db")
        count = json.loads(base64.b64decode(json.loads(saved.read_text())["payload"]))["count"]
        db.execute("DELETE FROM audit WHERE seq >= ?", (count - 1,))
        db.commit()
        db.close()
        emu.start()
        rolled = cli(*verify, *state, "--checkpoint", str(saved))
        assert rolled.returncode == 30
        assert "it was rolled back" in rolled.stderr
    finally:
        emu.stop()


def test_the_audit_api_pages_and_every_page_carries_the_whole_logs_checkpoint(
    emulator: EmulatorProcess, entries: list[AuditEntry]
) -> None:
    from jobruntime.controlplane.audit import verify_checkpoint, verify_log
    from jobruntime.spec.models import utcnow

    root = TrustRoot.load(emulator.trust_root)
    headers = {"Authorization": f"Bearer {emulator.token('operator')}"}
    pages, after = [], 0
    while after is not None:
        answer = requests.get(
            f"{emulator.url}/v1/audit",
            params={"after": after, "limit": 3},
            headers=headers,
            timeout=10,
        ).json()
        assert len(answer["entries"]) <= 3
        pages.append(answer)
        after = answer["next"]
    paged = [AuditEntry.model_validate(e) for p in pages for e in p["entries"]]
    assert len(pages) > 2
    assert [e.seq for e in paged] == list(range(1, len(paged) + 1))
    first = verify_checkpoint(pages[0]["checkpoint"], root, utcnow())
    assert first.count <= len(paged)
    with emulator.client("operator") as c:
        whole = c.audit()  # the client follows the pages and cuts at the checkpoint
    assert verify_log(whole.entries, whole.checkpoint, root, utcnow()).count == len(whole.entries)
    too_big = requests.get(
        f"{emulator.url}/v1/audit", params={"limit": 100_000}, headers=headers, timeout=10
    )
    assert too_big.status_code == 422
