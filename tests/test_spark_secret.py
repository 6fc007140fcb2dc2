"""The run's Spark secret: made by the KMS, released only to the run's attested key agents.

Driver and executor pods of one run get the same secret, each run its own; the agent
writes it 0400 on the pod's memory volume; nothing else the run writes holds it, and
every other session, run state or caller is refused with its code and gets nothing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from jobruntime.dev import pods
from jobruntime.keyagent.errors import UnsafeDirError
from jobruntime.keyagent.secretfile import write_spark_secret
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.jwe import KeyWrapError
from tests.conftest import Runs
from tests.pods import pod_run
from tests.sessions import TestPod, api, error_code


def _released(runs: Runs, run_id: str) -> list[dict[str, Any]]:
    with runs.emu.client("operator") as c:
        return [
            e.details
            for e in c.audit().entries
            if e.run_id == run_id and e.event == "kms.spark_secret_released"
        ]


def _secret(pod: TestPod) -> bytes:
    resp = api(
        pod.emu, "verifier", "POST", "/kms/spark-secret", {"session": pod.session("key-agent")}
    )
    assert resp.status_code == 200, resp.text
    return pod.keys["key-agent"].unwrap(resp.json()["jwe"])


def test_the_runs_pods_get_one_secret_written_0400_and_nowhere_else(
    runs: Runs, shm_dir: Path
) -> None:
    run = pod_run(runs, shm_dir)
    pods.run_verifier(run.driver, run.plan, "driver")
    with pods.key_agent(run.driver, run.plan, "driver"):
        pods.run_verifier(run.executor, run.plan, "executor")
        with pods.key_agent(run.executor, run.plan, "executor"):
            files = [run.plan.spark_secret(role) for role in ("driver", "executor")]
            secrets = {f.read_bytes() for f in files}
            modes = {stat.S_IMODE(f.stat().st_mode) for f in files}
    assert len(secrets) == 1 and modes == {0o400}
    (secret,) = secrets
    assert len(secret) == 32
    # Nothing else the run's pods or the control plane wrote holds it: bundles, logs,
    # termination logs, the audit log (only the KMS's own database keeps it).
    leaks = [
        p
        for root in (shm_dir, runs.emu.state)
        for p in Path(root).rglob("*")
        if p.is_file()
        and p not in files
        and not p.name.startswith("emulator.db")
        and (secret in p.read_bytes() or secret.hex().encode() in p.read_bytes())
    ]
    assert leaks == []
    assert sorted(d["role"] for d in _released(runs, run.run_id)) == ["driver", "executor"]


def test_each_run_has_its_own_secret_and_its_pods_share_it(runs: Runs) -> None:
    first = runs.keyed()
    driver = TestPod(runs.emu, first)
    assert driver.claim().status_code == 200
    executor = TestPod(runs.emu, first, role="executor")
    assert executor.attest("verifier").status_code == 200
    other = TestPod(runs.emu, runs.keyed())
    assert other.claim().status_code == 200
    assert _secret(driver) == _secret(executor) == _secret(driver)
    assert _secret(other) != _secret(driver)


@pytest.mark.parametrize("purpose", ["verifier", "heartbeat"])
def test_a_session_of_another_purpose_gets_no_secret(runs: Runs, purpose: str) -> None:
    run_id = runs.keyed()
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    body = {"session": pod.session(purpose)}
    resp = api(runs.emu, "verifier", "POST", "/kms/spark-secret", body)
    assert (resp.status_code, error_code(resp)) == (403, "kms.session_purpose")
    assert _released(runs, run_id) == []


def test_no_session_a_cancelled_or_a_finished_run_gets_no_secret(runs: Runs) -> None:
    resp = api(runs.emu, "verifier", "POST", "/kms/spark-secret", {"session": "made-up"})
    assert (resp.status_code, error_code(resp)) == (403, "kms.session_invalid")
    run_id = runs.keyed()
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    session = pod.session("key-agent")
    with runs.emu.client("operator") as c:
        c.cancel(run_id, "stop")
    resp = api(runs.emu, "verifier", "POST", "/kms/spark-secret", {"session": session})
    assert (resp.status_code, error_code(resp)) == (409, "kms.run_cancelled")
    assert _released(runs, run_id) == []
    with runs.emu.client("operator") as c:
        denied = [
            e.details["reason"]
            for e in c.audit().entries
            if e.run_id == run_id and e.event == "kms.release_denied"
        ]
    assert denied == ["kms.run_cancelled"]


def test_other_callers_cannot_ask(runs: Runs) -> None:
    for principal in ("submitter", "operator", "owner:org-a"):
        resp = api(runs.emu, principal, "POST", "/kms/spark-secret", {"session": "x"})
        assert (resp.status_code, error_code(resp)) == (403, "auth.forbidden")


# --- the file ---------------------------------------------------------------------------


def _dir(tmp_path: Path) -> Path:
    d = tmp_path / "agent"
    d.mkdir(mode=0o700)
    return d


def test_a_planted_symlink_or_foreign_file_is_refused_and_untouched(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"x")
    (d / "s").symlink_to(target)
    with pytest.raises(UnsafeDirError):
        write_spark_secret(d / "s", os.urandom(32), memory_fs=False)
    assert target.read_bytes() == b"x"
    (d / "f").write_bytes(b"planted")
    with pytest.raises(UnsafeDirError, match="not this run's secret"):
        write_spark_secret(d / "f", os.urandom(32), memory_fs=False)
    assert (d / "f").read_bytes() == b"planted"


def test_a_restarted_agent_keeps_the_same_secret(tmp_path: Path) -> None:
    d, secret = _dir(tmp_path), os.urandom(32)
    write_spark_secret(d / "s", secret, memory_fs=False)
    write_spark_secret(d / "s", secret, memory_fs=False)
    assert (d / "s").read_bytes() == secret
    with pytest.raises(UnsafeDirError):
        write_spark_secret(d / "s", os.urandom(32), memory_fs=False)


def test_a_directory_others_can_enter_is_refused(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    d.chmod(0o755)
    with pytest.raises(UnsafeDirError, match="mode 0700"):
        write_spark_secret(d / "s", os.urandom(32), memory_fs=False)
    assert not (d / "s").exists()


def test_the_secret_is_not_a_jwe_anyone_else_can_open(runs: Runs) -> None:
    """Wrapped to the session's ephemeral key: another key cannot unwrap it."""
    pod = TestPod(runs.emu, runs.keyed())
    assert pod.claim().status_code == 200
    resp = api(
        runs.emu, "verifier", "POST", "/kms/spark-secret", {"session": pod.session("key-agent")}
    )
    with pytest.raises(KeyWrapError):
        jwe.EphemeralKey().unwrap(resp.json()["jwe"])
