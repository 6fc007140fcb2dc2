"""The heartbeat sidecar's footprint: resident memory and CPU while it reports.

A real sidecar process (emulated TEE, real emulator over HTTP) reports every
``--interval`` seconds for ``--seconds``; RSS and CPU time come from /proc. The
baseline in the same run is a bare Python interpreter that only sleeps.
Target: under 40 MB RSS and negligible CPU.

    .venv/bin/python benchmarks/heartbeat_footprint.py [--seconds 30 --interval 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from heartbeat.cli import command
from jobruntime.dev.emulator import EmulatorProcess
from tests.conftest import Runs
from verifier.run import verify_run

TICK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def watch(proc: subprocess.Popen[bytes], seconds: float) -> tuple[float, float]:
    peak, start_cpu = 0.0, cpu_seconds(proc.pid)
    settle = time.monotonic() + 3  # start-up (imports, attestation) is not steady state
    while time.monotonic() < settle:
        peak = max(peak, rss_mb(proc.pid))
        time.sleep(0.2)
    start_cpu, started = cpu_seconds(proc.pid), time.monotonic()
    while time.monotonic() - started < seconds:
        peak = max(peak, rss_mb(proc.pid))
        time.sleep(0.2)
    return peak, (cpu_seconds(proc.pid) - start_cpu) / (time.monotonic() - started)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s, EmulatorProcess(Path(tmp_s) / "emu") as emu:
        tmp = Path(tmp_s)
        runs = Runs(emu, tmp)
        run_id = runs.approved()
        bundle = verify_run(runs.config(run_id)).parent
        token = tmp / "token"
        token.write_text(emu.token("verifier"))
        bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        sidecar = subprocess.Popen(
            command(
                bundle,
                emu.url,
                token,
                emu.state / "tee",
                args.interval,
                trust_root=emu.trust_root,
                spark_ui="http://127.0.0.1:9",
            ),
            stderr=subprocess.DEVNULL,
            env={**os.environ, "JOBRUNTIME_DEV": "1"},
        )
        try:
            peak, cpu = watch(sidecar, args.seconds)
            bare_peak, _ = watch(bare, 1.0)
        finally:
            sidecar.terminate()
            bare.terminate()
            sidecar.wait(10)
            bare.wait(10)
        with emu.client("operator") as c:
            sent = sum(
                1 for e in c.audit().entries if e.run_id == run_id and e.event == "heartbeat"
            )
    print(
        f"heartbeat sidecar, {args.seconds:.0f} s at a {args.interval:g} s interval: "
        f"{sent} heartbeats sent"
    )
    print(
        f"  peak RSS {peak:.1f} MB (bare python: {bare_peak:.1f} MB; "
        f"ratio {peak / bare_peak:.1f}x); target < 40 MB: {'met' if peak < 40 else 'MISSED'}"
    )
    print(f"  CPU {cpu * 100:.2f}% of one core in steady state")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
