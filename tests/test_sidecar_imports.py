"""The pod's sidecars stay small: what they import, from start to exit, as real processes.

The key agent and the heartbeat sidecar live as long as the pod, and their memory
request is paid by every pod (benchmarks/pod_footprint.py measures it; nothing here
times or sizes anything). The structural fact that keeps them small is checked here:
run through their whole life (re-verify the bundle, attest, release keys and serve
them, heartbeat, exit), neither imports pydantic, requests or urllib3, securesystemslib
(whose signer package imports the Azure SDK), nor anything of Spark, Arrow, pandas or
the control plane's server. ``python -X importtime`` lists every module a process
imports, including those imported late.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from heartbeat.cli import command
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.keyagent.client import KeyAgentClient
from tests.conftest import Runs
from verifier.run import verify_run

HEAVY = frozenset(
    {
        "pydantic",
        "pydantic_core",
        "requests",
        "urllib3",
        "charset_normalizer",
        "securesystemslib",
        "azure",
        "pyspark",
        "pyarrow",
        "pandas",
        "numpy",
        "fastapi",
        "starlette",
        "uvicorn",
        "rich",
    }
)


def imported(importtime: str) -> set[str]:
    """Top-level packages named by ``-X importtime`` lines (``import time: us | us | name``)."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in importtime.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def heartbeats(emu: EmulatorProcess, run_id: str) -> int:
    with emu.client("operator", retry_for=10) as c:
        return sum(1 for e in c.audit().entries if e.run_id == run_id and e.event == "heartbeat")


def run(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Started with ``-X importtime`` right after the interpreter; stderr to ``log``."""
    assert argv[0] == sys.executable
    with log.open("wb") as err:
        return subprocess.Popen(
            [argv[0], "-X", "importtime", *argv[1:]],
            stderr=err,
            env={**os.environ, "JOBRUNTIME_DEV": "1"},
        )


def test_the_heartbeat_sidecar_imports_nothing_heavy(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.approved()
    bundle = verify_run(runs.config(run_id)).parent
    token = tmp_path / "token"
    token.write_text(runs.emu.token("verifier"))
    argv = command(
        bundle,
        runs.emu.url,
        token,
        runs.emu.state / "tee",
        0.2,
        trust_root=runs.emu.trust_root,
        spark_ui="http://127.0.0.1:9",
    )
    log = tmp_path / "heartbeat.log"
    proc = run(argv, log)
    try:
        deadline = time.monotonic() + 30
        while heartbeats(runs.emu, run_id) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        (bundle / "driver-outcome.json").write_text(json.dumps({"outcome": "succeeded"}))
        proc.wait(30)
    finally:
        proc.kill()
    err = log.read_text()
    assert proc.returncode == 0, err[-2000:]
    seen = imported(err)
    assert {"heartbeat", "jobruntime", "jwcrypto", "cryptography"} <= seen
    assert seen & HEAVY == set()
    with runs.emu.client("operator") as c:
        assert c.status(run_id).state == "succeeded"


def test_the_key_agent_imports_nothing_heavy(runs: Runs, shm_dir: Path) -> None:
    # Its own URIs: the session's emulator is shared, and other tests publish at the defaults.
    tag = os.urandom(4).hex()
    run_id = runs.keyed(
        uris={n: f"file:///data/{n}-{tag}" for n in ("customers_a", "customers_b", "overlap")}
    )
    bundle = verify_run(runs.config(run_id)).parent
    spec = runs.signed(run_id).spec
    key_ids = {d.name: d.key_id for d in (*spec.inputs, *spec.outputs)}
    token = shm_dir / "token"
    token.write_text(runs.emu.token("verifier"))
    socket = shm_dir / "agent" / "agent.sock"
    socket.parent.mkdir(mode=0o700)
    argv = [
        sys.executable,
        "-m",
        "jobruntime.keyagent",
        "--socket",
        str(socket),
        "--spark-secret-file",
        str(socket.parent / "spark-auth-secret"),
        "--bundle-dir",
        str(bundle),
        "--control-plane-url",
        runs.emu.url,
        "--trust-root",
        str(runs.emu.trust_root),
        "--token-file",
        str(token),
        "--tee",
        "emulated",
        "--emulated-tee-dir",
        str(runs.emu.state / "tee"),
    ]
    log = shm_dir / "key-agent.log"
    proc = run(argv, log)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        client = KeyAgentClient(socket)
        kek = os.urandom(32)
        wrapped = client.wrap("overlap", key_ids["overlap"], kek)
        assert client.unwrap("overlap", key_ids["overlap"], wrapped) == kek
        for name, key_id in key_ids.items():  # every release: one per dataset
            client.key_check(name, key_id)
        assert client.latest_version("overlap") is None
        proc.terminate()
        proc.wait(30)
    finally:
        proc.kill()
    err = log.read_text()
    assert proc.returncode == 0, err[-2000:]
    seen = imported(err)
    assert {"jobruntime", "jwcrypto", "cryptography"} <= seen
    assert seen & HEAVY == set()
