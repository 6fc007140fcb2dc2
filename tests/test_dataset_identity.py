"""One canonical URI per dataset: specs refuse other spellings, the command line resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from jobruntime.controlplane.api import RunState
from tests.conftest import DEV_POLICY, Runs
from tests.sessions import api, error_code


def test_a_spec_with_a_relative_or_respelled_uri_is_refused(runs: Runs) -> None:
    for uri in ("data/a", "file:///data/./a", "/data/a"):
        body = runs.request().model_dump(mode="json", exclude_none=True)
        body["inputs"][0]["uri"] = uri
        resp = api(runs.emu, "submitter", "POST", "/runs", body)
        assert (resp.status_code, error_code(resp)) == (422, "request.invalid"), uri
        assert "not canonical" in resp.json()["error"]["message"]


def test_the_owner_api_refuses_another_spelling(runs: Runs) -> None:
    body = {"uri": "file:///data/./x", "key_id": "org-a/x", "version": 1}
    body["manifest_digest"] = "sha256:" + "ab" * 32
    resp = api(runs.emu, "owner:org-a", "POST", "/datasets/publish", body)
    assert (resp.status_code, error_code(resp)) == (400, "dataset.uri_not_canonical")


def test_an_owner_names_a_dataset_by_any_path_and_gets_the_same_dataset(
    runs: Runs, tmp_path: Path
) -> None:
    """Encrypt to a relative path, decrypt by its absolute file:// URI: one identity."""
    key_id = "org-a/identity-" + tmp_path.name[-8:].replace("_", "-").lower()
    with runs.emu.client("owner:org-a") as c:
        c.create_key(key_id, DEV_POLICY)
    src = tmp_path / "plain.csv"
    pacsv.write_csv(pa.table({"id": [1, 2, 3]}), src)

    def jr(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "jobruntime", *args, "--emulator-state", str(runs.emu.state)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    enc = jr("dataset", "encrypt", str(src), "--to", "./data/../ds", "--key", key_id)
    assert enc.returncode == 0, enc.stderr
    assert f"file://{tmp_path}/ds" in enc.stdout
    dec = jr("dataset", "decrypt", f"file://{tmp_path}/ds", "--to", "out.csv", "--key", key_id)
    assert dec.returncode == 0, dec.stderr
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == ["1", "2", "3"]


def test_a_uri_belongs_to_the_organisation_that_first_published_there(runs: Runs) -> None:
    """org-a published at a URI first: org-b cannot plant versions there (a pod's publish
    takes the same path, with the organisation of the spec's key)."""
    uri = f"file:///data/planted-{runs.tmp.name[-10:].lower()}"
    digest = "sha256:" + "ab" * 32
    first = {"uri": uri, "key_id": "org-a/x", "version": 1, "manifest_digest": digest}
    assert api(runs.emu, "owner:org-a", "POST", "/datasets/publish", first).status_code == 200
    planted = {"uri": uri, "key_id": "org-b/y", "version": 2, "manifest_digest": digest}
    resp = api(runs.emu, "owner:org-b", "POST", "/datasets/publish", planted)
    assert (resp.status_code, error_code(resp)) == (403, "dataset.owned_by_other")


def test_an_approved_runs_output_uri_is_reserved_for_its_owner(runs: Runs) -> None:
    """The attack from the issue: org-b plants a version where org-a's approved run will
    write. Approval reserves the output URI for org-a, so org-b's publish is refused and
    nothing is recorded there."""
    uri = f"file:///data/reserved-{runs.tmp.name[-10:].lower()}"
    overrides = runs.datasets(uris={"overlap": uri})
    run_id = runs.approved(**overrides)
    digest = "sha256:" + "cd" * 32
    planted = {"uri": uri, "key_id": "org-b/y", "version": 1, "manifest_digest": digest}
    resp = api(runs.emu, "owner:org-b", "POST", "/datasets/publish", planted)
    assert (resp.status_code, error_code(resp)) == (403, "dataset.owned_by_other")
    latest = api(runs.emu, "owner:org-b", "POST", "/datasets/latest", {"uri": uri})
    assert (latest.status_code, error_code(latest)) == (404, "dataset.unknown")
    with runs.emu.client("operator") as c:
        assert c.status(run_id).state is RunState.APPROVED


def test_a_run_cannot_be_approved_to_write_at_another_organisations_uri(runs: Runs) -> None:
    """org-b already holds the URI: the owners' last approval is refused with its code,
    the run stays pending, no approval is stored and the URI stays org-b's."""
    uri = f"file:///data/held-{runs.tmp.name[-10:].lower()}"
    digest = "sha256:" + "ef" * 32
    held = {"uri": uri, "key_id": "org-b/y", "version": 1, "manifest_digest": digest}
    assert api(runs.emu, "owner:org-b", "POST", "/datasets/publish", held).status_code == 200
    run_id = runs.submit(**runs.datasets(uris={"overlap": uri}))
    runs.approve(run_id, "org-b")
    resp = api(
        runs.emu,
        "owner:org-a",
        "POST",
        f"/runs/{run_id}/approvals",
        {"envelope": runs.approval(run_id, "org-a")},
    )
    assert (resp.status_code, error_code(resp)) == (409, "dataset.owned_by_other")
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
        entries = [e for e in c.audit().entries if e.run_id == run_id]
    assert status.state is RunState.PENDING_APPROVAL
    assert status.approved_by == {"org-a": 0, "org-b": 1}
    assert entries[-1].event == "approval.rejected"
    assert entries[-1].details == {"reason": "dataset.owned_by_other"}
