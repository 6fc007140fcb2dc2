"""The whole pod overhead: verifier time, and each sidecar's peak memory and CPU.

Real local pods in pod isolation (HOST_DATA measured by the launcher, the emulated
TEE) against a real emulator (its KMS, over HTTP), launched as ``tests/pods.py`` and
``jobruntime/dev/pods.py`` launch them:

- the driver pod's ``job-verifier`` (init container), then the executor pod's;
- the heartbeat sidecar: re-verifies the bundle, attests, sends ``--beats`` heartbeats
  (one a second), then a final one once the driver's outcome is written, and exits on
  its own; its CPU is also read from the second heartbeat on (steady state);
- meanwhile the driver pod's key agent, then an executor pod's: each re-verifies the
  bundle, attests, writes the Spark secret, serves a wrap, then 200 tasks' requests (key
  checks of every dataset, one release each, and an unwrap) from 8 concurrent readers,
  and is stopped with SIGTERM;
- the baseline: a bare ``python -c pass``.

Twice: first with the control plane on HTTPS and every container given its CA
(``--ca-bundle``, as ``runtime.json`` names it in the image): the production shape,
TLS included; then on plain HTTP (development mode's usual setup).

Peak RSS is each process's high-water mark (VmHWM, sampled from /proc every 5 ms
until it exits), so start-up spikes count; CPU is its user plus system seconds over
its life (``wait4``).

    .venv/bin/python benchmarks/pod_footprint.py [--beats 10] [--http-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobruntime.dev import pods
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.dev.localpod import LocalPod
from jobruntime.dev.process import ManagedProcess
from jobruntime.job.handoff import DRIVER_OUTCOME
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.sparkconf.spark_home import default_conf_dir
from tests.conftest import Runs
from tests.pods import STAND_IN_DRIVER, plan_for
from tests.test_client import self_signed

TARGET_MB = 40.0
TASKS = 8
KEK = os.urandom(32)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    name: str
    wall: float
    cpu: float
    peak_mb: float
    code: int


class HighWater(threading.Thread):
    """Samples the child's VmHWM until it exits (its memory is gone once it is a zombie).

    Not ``ru_maxrss``: Linux carries the high-water mark of the address space a child
    replaces at exec into it, so every child of this (large) process would report at
    least this process's own peak.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb = pid, 0
        self.start()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                lines = status.read_text().splitlines()
            except OSError:
                return
            hwm = [int(ln.split()[1]) for ln in lines if ln.startswith("VmHWM:")]
            if not hwm:  # exited: a zombie has no memory
                return
            self.peak_kb = max(self.peak_kb, hwm[0])
            time.sleep(0.005)


def popen(managed: ManagedProcess) -> subprocess.Popen[Any]:
    """Started; the bare process, for ``wait4``'s resource usage."""
    managed.start()
    assert managed.proc is not None
    return managed.proc


def start(launch: Callable[[], subprocess.Popen[Any]]) -> tuple[subprocess.Popen[Any], HighWater]:
    proc = launch()
    return proc, HighWater(proc.pid)


def reap(proc: subprocess.Popen[Any], watch: HighWater, started: float, name: str) -> Usage:
    """Wait for the child: its peak RSS as sampled, its own CPU time from ``wait4``."""
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    watch.join()
    return Usage(name, wall, ru.ru_utime + ru.ru_stime, watch.peak_kb / 1024, proc.returncode)


def run_to_exit(argv: list[str], name: str, env: dict[str, str] | None = None) -> Usage:
    started = time.perf_counter()
    proc, watch = start(
        lambda: subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    )
    assert proc.stderr is not None
    err = proc.stderr.read()  # drained, so a chatty child never blocks on a full pipe
    usage = reap(proc, watch, started, name)
    if usage.code != 0:
        raise SystemExit(f"{name} exited {usage.code}: {err.decode(errors='replace')[-800:]}")
    return usage


@dataclass
class Pods:
    run_id: str
    plan: pods.PodPlan
    driver: LocalPod
    executor: LocalPod


def pod_run(runs: Runs, work: Path, ca_bundle: Path | None) -> Pods:
    """``tests.pods.pod_run``, each container given the control plane's CA if it has one."""
    run_id = runs.submit(**runs.datasets(), workload={"isolation": "pod"})
    plan = plan_for(runs, run_id, work)

    def with_ca(pod: LocalPod) -> LocalPod:
        if ca_bundle is None:
            return pod
        speaks = (pods.VERIFIER, pods.KEY_AGENT, pods.HEARTBEAT)
        return LocalPod.of(
            [
                dataclasses.replace(
                    c,
                    argv=(*c.argv, "--ca-bundle", str(ca_bundle)),
                    files=(*c.files, ca_bundle),
                )
                if c.name in speaks
                else c
                for c in pod.containers
            ]
        )

    driver = with_ca(pods.driver_pod(plan, STAND_IN_DRIVER, default_conf_dir()))
    executor = with_ca(pods.executor_pod(plan))
    with runs.emu.client("submitter") as c:
        c.set_workload(run_id, pods.workload(driver, executor))
    runs.approve(run_id)
    return Pods(run_id, plan, driver, executor)


def verifier(run: Pods, pod: LocalPod, role: str) -> Usage:
    (run.plan.work / role).mkdir(parents=True, exist_ok=True)
    return run_to_exit(
        list(pod.container(pods.VERIFIER).argv),
        f"job-verifier ({role})",
        pod.environment(pods.VERIFIER),
    )


def key_agent(
    run: Pods, pod: LocalPod, role: str, ids: dict[str, str], wrapped: dict[str, str]
) -> Usage:
    """The agent until its socket is up, then a few requests of every kind, then SIGTERM."""
    socket = run.plan.socket(role)
    socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = run.plan.work / role / "key-agent.log"
    started = time.perf_counter()
    proc, watch = start(lambda: popen(pod.managed(pods.KEY_AGENT, log)))
    deadline = time.monotonic() + 60
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"key agent ({role}) did not start: {log.read_text()[-800:]}")
        time.sleep(0.02)
    client = KeyAgentClient(socket)
    if not wrapped:
        wrapped["overlap"] = client.wrap("overlap", ids["overlap"], KEK)
    for name, key_id in ids.items():
        client.key_check(name, key_id)  # one release per dataset, then from memory

    def task(_: int) -> None:  # a Spark task: its dataset keys' checks, then a KEK
        for name, key_id in ids.items():
            client.key_check(name, key_id)
        assert client.unwrap("overlap", ids["overlap"], wrapped["overlap"]) == KEK

    with ThreadPoolExecutor(TASKS) as pool:  # one connection per request, as readers do
        list(pool.map(task, range(TASKS * 25)))
    client.health()
    proc.terminate()
    usage = reap(proc, watch, started, f"key agent ({role})")
    if usage.code != 0:
        raise SystemExit(f"key agent ({role}) exited {usage.code}: {log.read_text()[-800:]}")
    return usage


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def heartbeats(emu: EmulatorProcess, run_id: str) -> int:
    with emu.client("operator") as c:
        return sum(1 for e in c.audit().entries if e.run_id == run_id and e.event == "heartbeat")


def measure(emu: EmulatorProcess, work: Path, beats: int) -> tuple[list[Usage], str]:
    runs = Runs(emu, work / "runs")
    run = pod_run(runs, work / "pods", emu.cert)  # heartbeat interval 1 s (tests/pods.py)
    spec = runs.signed(run.run_id).spec
    ids = {d.name: d.key_id for d in (*spec.inputs, *spec.outputs)}
    driver_verifier = verifier(run, run.driver, "driver")
    executor_verifier = verifier(run, run.executor, "executor")  # before the run ends
    hb_log = run.plan.work / "driver" / "heartbeat.log"
    hb_started = time.perf_counter()
    hb_proc, hb_watch = start(lambda: popen(run.driver.managed(pods.HEARTBEAT, hb_log)))
    wrapped: dict[str, str] = {}
    driver_agent = key_agent(run, run.driver, "driver", ids, wrapped)
    executor_agent = key_agent(run, run.executor, "executor", ids, wrapped)
    deadline = time.monotonic() + 60 + beats * run.plan.heartbeat_interval * 3
    steady: list[tuple[float, float]] = []  # (time, CPU) from the second heartbeat on
    while (sent := heartbeats(emu, run.run_id)) < beats:
        if hb_proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"heartbeat stopped early: {hb_log.read_text()[-800:]}")
        if sent >= 2 and not steady:
            steady.append((time.monotonic(), cpu_seconds(hb_proc.pid)))
        time.sleep(0.5)
    steady.append((time.monotonic(), cpu_seconds(hb_proc.pid)))
    # The driver's last word: the sidecar sends it in a final heartbeat and exits.
    outcome = run.plan.bundle_dir("driver") / DRIVER_OUTCOME
    outcome.write_text(json.dumps({"outcome": "succeeded", "outputs": []}))
    heartbeat = reap(hb_proc, hb_watch, hb_started, "heartbeat sidecar")
    if heartbeat.code != 0:
        raise SystemExit(f"heartbeat exited {heartbeat.code}: {hb_log.read_text()[-800:]}")
    sent = heartbeats(emu, run.run_id)
    with emu.client("operator") as c:
        state = c.status(run.run_id).state
    (t0, cpu0), (t1, cpu1) = steady[0], steady[-1]
    note = (
        f"heartbeat: {sent} heartbeats sent ({beats} + final), run {state}; "
        f"CPU {heartbeat.cpu / heartbeat.wall * 100:.1f}% of one core over its life, "
        f"{(cpu1 - cpu0) / (t1 - t0) * 100:.2f}% once reporting (1 s interval)"
    )
    rows = [driver_verifier, executor_verifier, driver_agent, executor_agent, heartbeat]
    return rows, note


def report(title: str, baseline: Usage, rows: list[Usage], note: str) -> list[str]:
    print(title)
    print(f"  {'process':<26}{'peak RSS':>10}{'x bare':>8}{'CPU s':>8}{'wall s':>8}")
    for u in [baseline, *rows]:
        print(
            f"  {u.name:<26}{u.peak_mb:>7.1f} MB{u.peak_mb / baseline.peak_mb:>7.1f}x"
            f"{u.cpu:>8.2f}{u.wall:>8.2f}"
        )
    print(f"  {note}")
    return [f"{u.name} ({title.split()[0]})" for u in rows[2:] if u.peak_mb >= TARGET_MB]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beats", type=int, default=10, help="heartbeats before the outcome")
    ap.add_argument("--http-only", action="store_true", help="skip the HTTPS run")
    args = ap.parse_args()
    baseline = run_to_exit([sys.executable, "-c", "pass"], "python -c pass")
    missed: list[str] = []
    for tls in ([] if args.http_only else [True]) + [False]:
        with (
            tempfile.TemporaryDirectory() as tmp_s,
            tempfile.TemporaryDirectory(prefix="bench-pod-", dir="/dev/shm") as shm_s,
        ):
            tmp = Path(tmp_s)
            with EmulatorProcess(tmp / "emu", tls=self_signed(tmp) if tls else None) as emu:
                rows, note = measure(emu, Path(shm_s), args.beats)
        title = (
            "HTTPS (the control plane's CA given, as in the image)"
            if tls
            else "HTTP (development mode)"
        )
        missed += report(title, baseline, rows, note)
    print(
        f"target < {TARGET_MB:.0f} MB peak RSS per sidecar: "
        + ("met" if not missed else f"MISSED by {', '.join(missed)}")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
