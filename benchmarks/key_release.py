"""Key release: how long a reader waits for a key, and how many KMS calls a run makes.

Against a real emulator and its KMS, with the emulated TEE. Two executor pods, each
with its own key agent (attests once, releases each dataset once), run many tasks
that each ask their agent for all three of the run's dataset keys. Baselines in the
same run: a key the agent already holds (a local socket round trip), and the raw
KMS release call on an already-attested session.

    .venv/bin/python benchmarks/key_release.py [--tasks 24]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobruntime.attestation.providers.choose import provider_for
from jobruntime.emulator.process import EmulatorProcess
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyrelease.session import AttestedSession
from tests.conftest import Runs
from verifier.run import verify_run

DATASETS = ("customers_a", "customers_b", "overlap")


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:7.2f} ms  max {max(samples) * 1000:7.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=24, help="tasks per executor")
    tasks = ap.parse_args().tasks
    with tempfile.TemporaryDirectory() as tmp_s, EmulatorProcess(Path(tmp_s) / "emu") as emu:
        tmp = Path(tmp_s)
        runs = Runs(emu, tmp)
        run_id = runs.keyed()
        verify_run(runs.config(run_id))
        provider = provider_for("emulated", emu.state / "tee")
        first, cached, sessions = [], [], []
        for _executor in range(2):
            session = AttestedSession(
                emu.client("verifier"), run_id, provider, allowed=frozenset(DATASETS)
            )
            sessions.append(session)
            sock_dir = Path(tempfile.mkdtemp(prefix="bench-", dir="/dev/shm"))
            with KeyAgentServer(sock_dir / "agent.sock", session).start() as server:
                client = KeyAgentClient(server.socket_path)
                started = time.perf_counter()
                client.get_key(DATASETS[0])  # attest + release + unwrap
                first.append(time.perf_counter() - started)

                def task(_: int, client: KeyAgentClient = client) -> float:
                    started = time.perf_counter()
                    for name in DATASETS:
                        client.get_key(name)
                    return (time.perf_counter() - started) / len(DATASETS)

                with ThreadPoolExecutor(8) as pool:
                    cached += list(pool.map(task, range(tasks)))
            sock_dir.rmdir()
        raw = []
        for name in DATASETS * 3:
            started = time.perf_counter()
            sessions[0].release(name)
            raw.append(time.perf_counter() - started)
        with emu.client("operator") as op:
            entries = [e for e in op.audit().entries if e.run_id == run_id]
    releases = sum(1 for e in entries if e.event == "kms.released")
    agent_attest = sum(
        1 for e in entries if e.event == "run.attested" and e.details["purpose"] == "key-agent"
    )
    agent_releases = releases - len(raw)
    print(f"first key through a fresh agent (attest + release + unwrap): {ms(first)}")
    print(f"key already held by the agent (socket round trip):          {ms(cached)}")
    print(f"baseline: one KMS release on an attested session:           {ms(raw)}")
    print(
        f"2 executors x {tasks} tasks x {len(DATASETS)} datasets = "
        f"{2 * tasks * len(DATASETS) + 2} key requests -> {agent_attest} attestations, "
        f"{agent_releases} KMS releases (target 6)"
    )
    print(f"ratio first / cached: {statistics.median(first) / statistics.median(cached):.0f}x")
    return 0 if agent_releases == 6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
