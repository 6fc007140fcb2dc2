"""How long job-verifier takes from process start to a written bundle.

Against a real local emulator: for each of N runs in pod isolation (the spec names
the driver pod's HOST_DATA, measured by the local pod launcher), time the
``job-verifier`` container end to end: checks 1-8, attestation with the spec digest,
pod and role bound and HOST_DATA checked, then the claim with that attested session.
Baselines in the same run: a bare ``python -c pass`` (interpreter start, the floor of
any Python init container) and ``verify_run`` in-process (the verification work
alone). Target: under 1 s end to end on this machine.

    .venv/bin/python benchmarks/verifier_latency.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobruntime.dev import pods
from jobruntime.dev.emulator import EmulatorProcess
from tests.conftest import Runs
from tests.pods import pod_run
from verifier.run import verify_run


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


def summary(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=10)
    return (
        f"median {statistics.median(samples) * 1000:7.1f} ms  p90 {q[-1] * 1000:7.1f} ms"
        f"  min {min(samples) * 1000:7.1f} ms"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    n = ap.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        emu = EmulatorProcess(tmp / "emu").start()
        try:
            runs = Runs(emu, tmp)
            python = [timed([sys.executable, "-c", "pass"]) for _ in range(n)]
            process = []
            for _ in range(n):
                work = Path(tempfile.mkdtemp(prefix="bench-verifier-", dir="/dev/shm"))
                try:
                    run = pod_run(runs, work)
                    started = time.perf_counter()
                    pods.run_verifier(run.driver, run.plan, "driver")
                    process.append(time.perf_counter() - started)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            inproc = []
            for i in range(n):
                run_id = runs.approved()
                started = time.perf_counter()
                verify_run(runs.config(run_id, output_dir=tmp / f"in{i}"))
                inproc.append(time.perf_counter() - started)
        finally:
            emu.stop()
    med = statistics.median(process)
    print(f"job-verifier pod container, start to bundle ({n} runs): {summary(process)}")
    print(f"baseline python -c pass:                       {summary(python)}")
    print(f"verify_run in-process (checks + 4 HTTP calls): {summary(inproc)}")
    print(
        f"ratio verifier / bare interpreter: {med / statistics.median(python):.1f}x; "
        f"import and start-up share: {1 - statistics.median(inproc) / med:.0%}"
    )
    print(f"target < 1000 ms: {'met' if med < 1.0 else 'MISSED'} ({med * 1000:.0f} ms median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
