"""The data owner's daily loop through the real commands (issue 14, owners' part):
list and review runs, approve with confirmation, enrol an approval key, read the audit
entries about its own org, list keys and change their release policy."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.controlplane.api import OwnerKeyEnrolment
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from tests.conftest import Runs
from tests.sessions import api, error_code
from tests.tamper import flip_byte


def jr(
    emu: EmulatorProcess, *args: str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    conn = ["--emulator-state", str(emu.state)] + (["--url", url] if url else [])
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", *args, *conn],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def other_org_run(runs: Runs) -> str:
    """A run that names only org-b."""
    req = runs.request().model_dump(mode="json", exclude_none=True)
    req["inputs"] = [d for d in req["inputs"] if d["owner"] == "org-b"]
    req["outputs"] = [{**req["inputs"][0], "name": "out", "uri": "file:///data/b-out"}]
    return runs.submit(inputs=req["inputs"], outputs=req["outputs"])


# --- runs list / show -------------------------------------------------------------------


def test_owner_lists_only_runs_naming_its_org(emulator: EmulatorProcess, runs: Runs) -> None:
    shared = runs.submit()
    b_only = other_org_run(runs)
    listed = json.loads(ok(jr(emulator, "runs", "list", "--owner", "org-a", "--json")))
    ids = {r["run_id"] for r in listed}
    assert shared in ids and b_only not in ids
    assert all("org-a" in r["required_owners"] for r in listed)
    as_b = ok(jr(emulator, "runs", "list", "--owner", "org-b"))
    assert shared in as_b and b_only in as_b
    everything = json.loads(ok(jr(emulator, "runs", "list", "--as", "operator", "--json")))
    assert {shared, b_only} <= {r["run_id"] for r in everything}


def test_runs_list_pages(emulator: EmulatorProcess, runs: Runs) -> None:
    for _ in range(3):
        runs.submit()
    with emulator.client("operator") as c:
        first = c.list_runs(limit=2)
        assert len(first.runs) == 2 and first.next == first.runs[-1].run_id
        second = c.list_runs(after=first.next, limit=2)
        assert not {r.run_id for r in first.runs} & {r.run_id for r in second.runs}
        assert len(c.all_runs()) >= 3


def test_runs_show_is_the_verified_review(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    review = json.loads(ok(jr(emulator, "runs", "show", run_id, "--owner", "org-a", "--json")))
    spec = runs.signed(run_id)
    assert review["spec_digest"] == spec.digest
    assert review["module"]["sha256"] == spec.spec.module.sha256
    assert review["image_digest"] == spec.spec.image_digest
    assert review["isolation"] == "node"
    assert review["parameters"] == {"k": 10, "label": "x"}
    assert review["outputs"][0]["owner"] == "org-a"
    assert review["outputs"][0]["key_id"] == "org-a/overlap"
    assert review["approvals"]["org-a"] == {"keys": 0, "needed": 1, "met": False}
    text = ok(jr(emulator, "runs", "show", run_id, "--owner", "org-a"))
    for needle in ("jobs.sample", "k = 10", "org-a/overlap", "HOST_DATA", "signature verified"):
        assert needle in text


def test_owner_cannot_show_a_run_of_another_org(emulator: EmulatorProcess, runs: Runs) -> None:
    b_only = other_org_run(runs)
    refused = jr(emulator, "runs", "show", b_only, "--owner", "org-a")
    assert refused.returncode != 0
    assert "auth.forbidden" in refused.stderr
    assert b_only not in refused.stdout


@pytest.fixture
def forging_proxy(emulator: EmulatorProcess) -> Iterator[str]:
    """Forwards to the emulator, flipping one byte of every signed spec it passes on."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            up = requests.get(
                emulator.url + self.path,
                headers={"Authorization": self.headers.get("Authorization", "")},
                timeout=10,
            )
            body = up.content
            if self.path.endswith("/spec") and up.ok:
                body = json.dumps(flip_byte(up.json())).encode()
            self.send_response(up.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_forged_spec_is_refused_by_show_and_approve(
    emulator: EmulatorProcess, runs: Runs, forging_proxy: str
) -> None:
    run_id = runs.submit()
    shown = jr(emulator, "runs", "show", run_id, "--owner", "org-a", url=forging_proxy)
    assert shown.returncode == 11, shown.stderr
    assert "signature.invalid" in shown.stderr
    assert "jobs.sample" not in shown.stdout
    key = str(emulator.owner_key("org-a"))
    args = ("approve", run_id, "--owner", "org-a", "--key", key, "--yes")
    approved = jr(emulator, *args, url=forging_proxy)
    assert approved.returncode == 11
    with emulator.client("operator") as c:
        assert c.status(run_id).approved_by["org-a"] == 0


# --- approve ---------------------------------------------------------------------------


def test_approve_without_yes_and_without_a_terminal_signs_nothing(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run_id = runs.submit()
    key = str(emulator.owner_key("org-a"))
    refused = jr(emulator, "approve", run_id, "--owner", "org-a", "--key", key)
    assert refused.returncode == 2
    assert "confirmation.required" in refused.stderr
    assert "nothing was signed" in refused.stderr
    assert "k = 10" in refused.stdout  # the review was shown before the question
    with emulator.client("operator") as c:
        assert c.status(run_id).approved_by["org-a"] == 0
        assert c.signed_run(run_id).approvals == []


def test_approve_yes_shows_then_signs_and_prints_the_digest(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run_id = runs.submit()
    digest = runs.signed(run_id).digest
    key = str(emulator.owner_key("org-a"))
    out = ok(jr(emulator, "approve", run_id, "--owner", "org-a", "--key", key, "--yes"))
    assert "org-a/overlap" in out and "parameters" in out
    assert f"org-a signed {digest}" in out
    with emulator.client("operator") as c:
        assert c.status(run_id).approved_by["org-a"] == 1


# --- keys enrol ------------------------------------------------------------------------


def test_owner_enrols_its_own_key_and_approves_with_it(
    emulator: EmulatorProcess, runs: Runs, tmp_path: Path
) -> None:
    key = tmp_path / "new-a.key"
    made = subprocess.run(
        [sys.executable, "-m", "jobruntime", "keys", "generate", "--out", str(key)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    before = json.loads(emulator.trust_root.read_text())["owners"]["org-a"]
    # Signed by org-a's current approval key (the state's owners/org-a.key) and the new key.
    out = ok(jr(emulator, "keys", "enrol", "--owner", "org-a", "--key", str(key), "--json"))
    done = json.loads(out)
    root = json.loads(emulator.trust_root.read_text())
    assert done["keyid"] in root["owners"]["org-a"]["keyids"]
    assert root["owners"]["org-a"]["threshold"] == before["threshold"]
    assert done["keyid"] not in root["owners"]["org-b"]["keyids"]
    # Usable at once: the emulator and the CLI both use the new trust root.
    run_id = runs.submit()
    ok(jr(emulator, "approve", run_id, "--owner", "org-a", "--key", str(key), "--yes"))
    with emulator.client("operator") as c:
        assert c.status(run_id).approved_by["org-a"] == 1
    # Audited, and org-a reads that entry in its own view.
    mine = json.loads(ok(jr(emulator, "audit", "mine", "--owner", "org-a", "--json")))
    assert any(
        e["event"] == "trustroot.owner_key_enrolled" and e["details"]["keyid"] == done["keyid"]
        for e in mine
    )
    # The same key again (for any org) is refused: a key acts for one role only.
    again = jr(emulator, "keys", "enrol", "--owner", "org-b", "--key", str(key))
    assert again.returncode != 0 and "trustroot.key_exists" in again.stderr


def test_an_org_cannot_enrol_a_key_for_another_org(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """The org comes from the token and the enrolment must be signed by that org's keys:
    org-b's signed enrolment sent with org-a's token adds nothing anywhere."""
    key = tmp_path / "x.key"
    subprocess.run(
        [sys.executable, "-m", "jobruntime", "keys", "generate", "--out", str(key)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    before = emulator.trust_root.read_text()
    args = ("keys", "enrol", "--owner", "org-b", "--as", "owner:org-a", "--key", str(key))
    refused = jr(emulator, *args)
    assert refused.returncode != 0 and "signature.unknown_key" in refused.stderr
    # An operator or submitter token may not enrol at all.
    for principal in ("operator", "submitter"):
        refused = jr(
            emulator, "keys", "enrol", "--owner", "org-a", "--as", principal, "--key", str(key)
        )
        assert "auth.forbidden" in refused.stderr
    assert emulator.trust_root.read_text() == before


def _enrolment(
    org: str, new: SigningKey, signers: list[SigningKey], at: datetime | None = None
) -> dict[str, Any]:
    statement = OwnerKeyEnrolment(
        org=org, public_key_pem=new.public_pem, days=30, at=at or utcnow()
    )
    return envelope.to_json(envelope.sign(canonical(statement), envelope.ENROLMENT_TYPE, signers))


def test_an_owner_token_alone_enrols_nothing(emulator: EmulatorProcess) -> None:
    """Whoever holds org-a's token but none of its approval keys cannot add a key that
    would approve for org-a; nor can a stale or unpossessed enrolment."""
    org_a = SigningKey.load(emulator.owner_key("org-a"))
    new, other = SigningKey.generate("ed25519"), SigningKey.generate("ed25519")
    before = emulator.trust_root.read_text()
    cases = [
        (_enrolment("org-a", new, [new]), 403, "signature.unknown_key"),  # token + new key only
        (_enrolment("org-a", new, [org_a]), 403, "trustroot.no_possession"),
        (_enrolment("org-a", new, [org_a, other]), 403, "trustroot.no_possession"),
        (
            _enrolment("org-a", new, [org_a, new], at=utcnow() - timedelta(hours=1)),
            409,
            "trustroot.enrolment_stale",
        ),
        (_enrolment("org-b", new, [org_a, new]), 403, "auth.forbidden"),
    ]
    for signed, status, code in cases:
        resp = api(emulator, "owner:org-a", "POST", "/trust-root/owner-keys", {"envelope": signed})
        assert (resp.status_code, error_code(resp)) == (status, code), code
    assert emulator.trust_root.read_text() == before
    with emulator.client("operator") as c:
        refused = [e for e in c.audit().entries if e.event == "trustroot.enrol_refused"]
    assert len(refused) >= len(cases)


# --- audit mine ------------------------------------------------------------------------


def test_owner_audit_never_returns_another_orgs_entries(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    a_key = f"org-a/audit-{secrets.token_hex(4)}"
    b_key = f"org-b/audit-{secrets.token_hex(4)}"
    for key_id in (a_key, b_key):
        ok(jr(emulator, "kms", "create-key", key_id, "--emulated"))
    b_only = other_org_run(runs)
    shared = runs.approved()  # both orgs approve: entries naming org-b on a shared run
    # org-b's rejected approval on a run both share names org-b only as its actor (found
    # leaking into org-a's view when another test's rejection was in the log).
    pending = runs.submit()
    forged = runs.approval(pending, "org-b", key=SigningKey.generate())
    resp = api(emulator, "owner:org-b", "POST", f"/runs/{pending}/approvals", {"envelope": forged})
    assert resp.status_code == 400, resp.text
    mine = json.loads(ok(jr(emulator, "audit", "mine", "--owner", "org-a", "--json")))
    events = {(e["event"], e["details"].get("key_id")) for e in mine}
    assert ("kms.key_created", a_key) in events
    assert ("kms.key_created", b_key) not in events
    assert all(e["run_id"] != b_only for e in mine)
    assert any(e["run_id"] == shared and e["event"] == "run.submitted" for e in mine)
    with emulator.client("operator") as c:
        whole = c.audit().entries
    b_named = {
        e.seq
        for e in whole
        if e.details.get("owner") == "org-b"
        or str(e.details.get("key_id", "")).startswith("org-b/")
        or e.actor == "owner:org-b"
        or e.run_id == b_only
    }
    rejected = [e for e in whole if e.run_id == pending and e.event == "approval.rejected"]
    assert rejected and {e.seq for e in rejected} <= b_named
    leaked = [e for e in mine if e["seq"] in b_named]
    assert b_named and not leaked, leaked
    # Only owners have this view.
    assert jr(emulator, "audit", "mine", "--owner", "org-a", "--as", "operator").returncode != 0


# --- kms ---------------------------------------------------------------------------------


def test_kms_emulated_measurement_list_and_set_policy(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "jobruntime", "kms", "emulated-measurement"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok(printed).strip() == EMULATED_MEASUREMENT.hex()
    key_id = f"org-a/k-{secrets.token_hex(4)}"
    ok(jr(emulator, "kms", "create-key", key_id, "--emulated"))
    listed = json.loads(ok(jr(emulator, "kms", "list", "--owner", "org-a", "--json")))
    mine = {k["key_id"]: k for k in listed}
    assert mine[key_id]["release_policy"]["measurements"] == [EMULATED_MEASUREMENT.hex()]
    assert "emulated" in mine[key_id]["release_policy"]["evidence_kinds"]
    assert all(k["owner"] == "org-a" for k in listed)
    b_listed = ok(jr(emulator, "kms", "list", "--owner", "org-b"))
    assert key_id not in b_listed

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"measurements": ["ab" * 48], "evidence_kinds": ["sev-snp"]}))
    out = ok(jr(emulator, "kms", "set-policy", key_id, "--policy", str(policy)))
    assert "future releases only" in out
    shown = json.loads(ok(jr(emulator, "kms", "show", key_id)))
    assert shown["release_policy"]["measurements"] == ["ab" * 48]
    changed = json.loads(ok(jr(emulator, "audit", "mine", "--owner", "org-a", "--json")))
    assert any(
        e["event"] == "kms.policy_changed" and e["details"]["key_id"] == key_id for e in changed
    )

    # Another org may not change it; nor may an operator.
    for principal in ("owner:org-b", "operator"):
        refused = jr(
            emulator, "kms", "set-policy", key_id, "--policy", str(policy), "--as", principal
        )
        assert refused.returncode != 0 and "auth.forbidden" in refused.stderr
    # Without a measurement or --emulated: a typed error that says how.
    bare = jr(emulator, "kms", "create-key", f"org-a/n-{secrets.token_hex(4)}")
    assert bare.returncode == 2 and "emulated-measurement" in bare.stderr


# --- decrypt takes the manifest's key ------------------------------------------------------


def test_decrypt_uses_the_manifests_key_by_default(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    key_id = f"org-a/dec-{secrets.token_hex(4)}"
    ok(jr(emulator, "kms", "create-key", key_id, "--emulated"))
    src = tmp_path / "plain.csv"
    pacsv.write_csv(pa.table({"id": [1, 2, 3]}), src)
    uri = f"file://{tmp_path}/ds"
    ok(jr(emulator, "dataset", "encrypt", str(src), "--to", uri, "--key", key_id))
    out = tmp_path / "out.csv"
    ok(jr(emulator, "dataset", "decrypt", uri, "--to", str(out)))
    assert out.read_text().splitlines()[1:] == ["1", "2", "3"]
    # org-b's token does not open org-a's key even when the manifest names it.
    refused = jr(
        emulator, "dataset", "decrypt", uri, "--to", str(tmp_path / "b.csv"), "--as", "owner:org-b"
    )
    assert refused.returncode != 0 and not (tmp_path / "b.csv").exists()
