"""Key release: how long a reader waits for its first KEK, and how many KMS calls a run makes.

Against a real emulator and its KMS, with the emulated TEE, in pod isolation: the
driver pod and two executor pods, each launched as local processes with the HOST_DATA
the launcher measured. Each pod's verifier attests (and the driver's claims); each
pod's key agent re-verifies the bundle, attests once, and releases each dataset once;
then many tasks ask their agent to unwrap a KEK of each of the run's datasets.

Measured in the same run:
- first KEK through a fresh agent: container start (imports, bundle re-verification,
  attestation, key release) to the first answered ``unwrap``;
- a KEK with the master key already held (one socket round trip);
- baselines: a bare ``python -c pass`` and an in-memory unwrap with the master key.

    .venv/bin/python benchmarks/key_release.py [--tasks 24]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.dev import pods
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.keyagent.client import KeyAgentClient
from tests.conftest import Runs
from tests.pods import pod_run

DATASETS = ("customers_a", "customers_b", "overlap")
KEK = os.urandom(32)


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:8.3f} ms  max {max(samples) * 1000:8.3f} ms"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=24, help="tasks per pod")
    tasks = ap.parse_args().tasks
    shm = Path(tempfile.mkdtemp(prefix="bench-keys-", dir="/dev/shm"))
    try:
        with tempfile.TemporaryDirectory() as tmp_s, EmulatorProcess(Path(tmp_s) / "emu") as emu:
            runs = Runs(emu, Path(tmp_s))
            run = pod_run(runs, shm)
            spec = runs.signed(run.run_id).spec
            ids = {d.name: d.key_id for d in (*spec.inputs, *spec.outputs)}
            # The output's key wraps a KEK; every pod then unwraps KEKs of every dataset.
            pods.run_verifier(run.driver, run.plan, "driver")
            first: list[float] = []
            held: list[float] = []
            wrapped: dict[str, str] = {}
            for role, pod in (
                ("driver", run.driver),
                ("executor", run.executor),
                ("executor2", None),
            ):
                if pod is None:  # a second executor pod: its own verifier, pod id and agent
                    pod, role = run.executor, "executor"
                    for name in ("bundle", "agent"):
                        shutil.rmtree(run.plan.work / "executor" / name, ignore_errors=True)
                if role == "executor":
                    pods.run_verifier(pod, run.plan, "executor")
                started = time.perf_counter()
                with pods.key_agent(pod, run.plan, role) as socket:
                    client = KeyAgentClient(socket)
                    if not wrapped:
                        wrapped["overlap"] = client.wrap("overlap", ids["overlap"], KEK)
                    client.unwrap("overlap", ids["overlap"], wrapped["overlap"])
                    first.append(time.perf_counter() - started)
                    for name in DATASETS:
                        client.key_check(name, ids[name])  # the other releases, once each

                    def task(_: int, client: KeyAgentClient = client) -> float:
                        t0 = time.perf_counter()
                        for name in DATASETS:
                            client.key_check(name, ids[name])
                        client.unwrap("overlap", ids["overlap"], wrapped["overlap"])
                        return (time.perf_counter() - t0) / (len(DATASETS) + 1)

                    with ThreadPoolExecutor(8) as pool:
                        held += list(pool.map(task, range(tasks)))
            with emu.client("operator") as op:
                entries = [e for e in op.audit().entries if e.run_id == run.run_id]
        python = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            python.append(time.perf_counter() - t0)
        local = LocalMasterKey("org-a/x", os.urandom(32))
        token = local.wrap(KEK)
        memory = []
        for _ in range(200):
            t0 = time.perf_counter()
            local.unwrap(token)
            memory.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    releases = sum(1 for e in entries if e.event == "kms.released")
    agents = sum(
        1 for e in entries if e.event == "run.attested" and e.details["purpose"] == "key-agent"
    )
    requests = 3 * tasks * (len(DATASETS) + 1)
    print(f"first KEK through a fresh agent (start, verify, attest, release): {ms(first)}")
    print(f"KEK with the master key held (socket round trip):                {ms(held)}")
    print(f"baseline: python -c pass:                                        {ms(python)}")
    print(f"baseline: unwrap in memory with the master key:                  {ms(memory)}")
    print(
        f"3 pods x {tasks} tasks x {len(DATASETS) + 1} ops = {requests} requests -> "
        f"{agents} key-agent attestations, {releases} KMS releases (target 3 and 9)"
    )
    print(f"ratio first / held: {statistics.median(first) / statistics.median(held):.0f}x")
    return 0 if (agents, releases) == (3, 9) else 1


if __name__ == "__main__":
    raise SystemExit(main())
