"""``python -m jobruntime.keyagent`` as a real process: serve, SIGTERM, clean exit."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.errors import (
    KeyAgentUnavailableError,
    KeyMismatchError,
    NoSuchKeyError,
    NotInSpecError,
)
from tests.conftest import Runs
from verifier.run import verify_run

ROOT = Path(__file__).resolve().parents[2]


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobruntime.keyagent", *args]


DEV = {**os.environ, "JOBRUNTIME_DEV": "1"}  # static keys are for development only


@pytest.fixture
def keys_file(tmp_path: Path) -> tuple[Path, bytes]:
    key = b"CLI-SENTINEL-" + os.urandom(19)  # 32 bytes
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"sales": base64.b64encode(key).decode()}))
    return path, key


def wait_ready(client: KeyAgentClient, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.health()
            return
        except KeyAgentUnavailableError:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.02)
    pytest.fail("the key agent did not come up")


KID = "org-a/sales"


def test_serves_and_exits_0_on_sigterm(shm_dir: Path, keys_file: tuple[Path, bytes]) -> None:
    path, key = keys_file
    sock = shm_dir / "run" / "agent.sock"
    cmd = agent_cmd("--socket", str(sock), "--static-keys", str(path), "--log-level", "DEBUG")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=DEV, stderr=subprocess.PIPE, text=True)
    try:
        client = KeyAgentClient(sock)
        wait_ready(client, proc)
        assert client.key_check("sales", KID) == LocalMasterKey(KID, key).key_check()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert not sock.exists()
    assert "NOT FOR PRODUCTION" in stderr
    assert "released the key of dataset sales" in stderr
    for form in (key.hex(), base64.b64encode(key).decode(), "CLI-SENTINEL"):
        assert form not in stderr


@pytest.mark.parametrize(
    ("extra", "exit_code", "line"),
    [
        ([], 2, "keyagent: config.invalid: the KMS source needs --bundle-dir"),
        (["--static-keys", "/nonexistent/keys.json"], 2, "keyagent: config.invalid: cannot read"),
        (["--disk"], 22, "keyagent: keyagent.unsafe_dir: "),
        (["--outside-dev"], 2, "keyagent: config.invalid: --static-keys is for development"),
    ],
)
def test_refusals_are_one_line_with_their_exit_code(
    shm_dir: Path,
    tmp_path: Path,
    keys_file: tuple[Path, bytes],
    extra: list[str],
    exit_code: int,
    line: str,
) -> None:
    sock, env = shm_dir / "agent.sock", DEV
    if extra == ["--disk"]:
        sock, extra = tmp_path / "agent.sock", ["--static-keys", str(keys_file[0])]
    if extra == ["--outside-dev"]:
        extra = ["--static-keys", str(keys_file[0])]
        env = {k: v for k, v in DEV.items() if k != "JOBRUNTIME_DEV"}
    done = subprocess.run(
        agent_cmd("--socket", str(sock), *extra),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == exit_code
    errors = [s for s in done.stderr.splitlines() if s.startswith("keyagent:")]
    assert len(errors) == 1 and errors[0].startswith(line), done.stderr
    assert "Traceback" not in done.stderr
    assert not sock.exists()


def test_bundle_limits_what_is_served(
    runs: Runs, shm_dir: Path, tmp_path: Path, keys_file: tuple[Path, bytes]
) -> None:
    """A genuine verifier bundle: only the spec's datasets are served, whatever the file has."""
    bundle = verify_run(runs.config(runs.approved())).parent
    keys = {"customers_a": b"a" * 32, "extra": b"e" * 32}
    path = tmp_path / "dev-keys.json"
    path.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in keys.items()}))
    sock = shm_dir / "agent.sock"
    cmd = agent_cmd(
        "--socket",
        str(sock),
        "--static-keys",
        str(path),
        "--bundle-dir",
        str(bundle),
        "--trust-root",
        str(runs.emu.trust_root),
    )
    proc = subprocess.Popen(cmd, cwd=ROOT, env=DEV, stderr=subprocess.PIPE, text=True)
    try:
        client = KeyAgentClient(sock)
        wait_ready(client, proc)
        assert client.health()["datasets"] == ["customers_a", "customers_b", "overlap"]
        kid = "org-a/customers"  # the spec's key id for customers_a
        expected = LocalMasterKey(kid, keys["customers_a"]).key_check()
        assert client.key_check("customers_a", kid) == expected
        with pytest.raises(KeyMismatchError):
            client.key_check("customers_a", KID)
        with pytest.raises(NotInSpecError):
            client.key_check("extra", KID)
        with pytest.raises(NoSuchKeyError):
            client.key_check("overlap", "org-a/overlap")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert not sock.exists()


def test_a_socket_it_cannot_listen_on_is_refused_before_it_attests(
    runs: Runs, shm_dir: Path, tmp_path: Path
) -> None:
    """Found by the pod runner: a too-long socket path was refused only after the agent had
    attested (and taken the Spark secret), using up the pod's one key-agent session."""
    run_id = runs.keyed()
    bundle = verify_run(runs.config(run_id)).parent
    token = tmp_path / "token"
    token.write_text(runs.emu.token("verifier"))
    sock = shm_dir / ("x" * 120) / "agent.sock"
    done = subprocess.run(
        agent_cmd(
            *("--socket", str(sock), "--bundle-dir", str(bundle)),
            *("--control-plane-url", runs.emu.url, "--trust-root", str(runs.emu.trust_root)),
            *("--token-file", str(token), "--tee", "emulated"),
            *("--emulated-tee-dir", str(runs.emu.state / "tee")),
        ),
        cwd=ROOT,
        env=DEV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 22, done.stderr
    assert "keyagent: keyagent.socket_path: " in done.stderr
    with runs.emu.client("operator") as c:
        attested = [
            e.details["purpose"]
            for e in c.audit().entries
            if e.run_id == run_id and e.event == "run.attested"
        ]
    assert attested == ["verifier"]  # the verifier's own; no key-agent session was opened
