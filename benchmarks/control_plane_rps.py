"""Control-plane throughput: claims and key releases per second against the real emulator.

Each claim is one ``POST /runs/{id}/claim`` with an attested driver verifier session
(the attestation itself is done beforehand, untimed); each release is one
``POST /kms/release`` with the driver's key-agent session. Baseline in the same run:
``GET /health`` (HTTP, authentication and the gate, no decision). All calls are
made over keep-alive HTTP from ``--threads`` threads.

    .venv/bin/python benchmarks/control_plane_rps.py [--claims 40] [--releases 400]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobruntime.dev.emulator import EmulatorProcess
from tests.conftest import Runs
from tests.sessions import TestPod


def rate(calls: list[Callable[[requests.Session], int]], threads: int) -> float:
    """Calls per second; every call must answer 200."""
    sessions = [requests.Session() for _ in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        codes = list(pool.map(lambda i: calls[i](sessions[i % threads]), range(len(calls))))
    elapsed = time.perf_counter() - started
    bad = [c for c in codes if c != 200]
    if bad:
        raise SystemExit(f"{len(bad)} calls failed: {sorted(set(bad))}")
    return len(calls) / elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=40)
    ap.add_argument("--releases", type=int, default=400)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(Path(tmp) / "emu") as emu:
        runs = Runs(emu, Path(tmp))
        url, verifier = f"{emu.url}/v1", {"Authorization": f"Bearer {emu.token('verifier')}"}

        def post(path: str, body: dict[str, str]) -> Callable[[requests.Session], int]:
            return lambda s: (
                s.post(f"{url}{path}", json=body, headers=verifier, timeout=30).status_code
            )

        health = [
            (lambda s: s.get(f"{url}/health", headers=verifier, timeout=30).status_code)
        ] * args.releases
        # Claims: approved runs whose driver verifier has attested (untimed).
        pods = [TestPod(emu, runs.approved()) for _ in range(args.claims)]
        claims = []
        for pod in pods:
            pod.session("verifier")
            body = {"claim_id": secrets.token_hex(32), "session": pod.tokens["verifier"]}
            claims.append(post(f"/runs/{pod.run_id}/claim", body))
        # Releases: one claimed run, its driver's key-agent session, three datasets.
        driver = TestPod(emu, runs.keyed())
        assert driver.claim().status_code == 200
        names = ("customers_a", "customers_b", "overlap")
        releases = [
            post("/kms/release", {"session": driver.session("key-agent"), "dataset": names[i % 3]})
            for i in range(args.releases)
        ]
        base = rate(health, args.threads)
        claim_rps = rate(claims, args.threads)
        release_rps = rate(releases, args.threads)
    print(f"baseline GET /health:    {base:8.1f} req/s")
    for name, rps in (("POST /runs/{id}/claim", claim_rps), ("POST /kms/release", release_rps)):
        print(f"{name:24} {rps:8.1f} req/s   ({base / rps:.2f}x the baseline's cost)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
