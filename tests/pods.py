"""Runs in pod isolation with real local pods: HOST_DATA measured by the launcher."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobruntime.controlplane.api import ReleasePolicy
from jobruntime.dev import pods
from jobruntime.dev.localpod import LocalPod
from jobruntime.dev.pods import PodPlan
from jobruntime.sparkconf.spark_home import default_conf_dir
from tests.conftest import IMAGE, Runs

STAND_IN_DRIVER = (sys.executable, "-c", "pass")


@dataclass
class PodRun:
    run_id: str
    plan: PodPlan
    driver: LocalPod
    executor: LocalPod


def plan_for(runs: Runs, run_id: str, work: Path, **overrides: Any) -> PodPlan:
    work.mkdir(parents=True, exist_ok=True)
    (work / "token").write_text(runs.emu.token("verifier"))
    values: dict[str, Any] = {
        "run_id": run_id,
        "control_plane_url": runs.emu.url,
        "token_file": work / "token",
        "trust_root": runs.emu.trust_root,
        "module": runs.module,
        "image_digest": IMAGE,
        "emulated_tee_dir": runs.emu.state / "tee",
        "work": work,
        "heartbeat_interval": 1.0,
        "verifier_deadline": 5.0,
    }
    values.update(overrides)
    return PodPlan(**values)


def pod_run(
    runs: Runs,
    work: Path,
    *,
    policy: ReleasePolicy | None = None,
    driver_argv: Sequence[str] = STAND_IN_DRIVER,
    approve: bool = True,
) -> PodRun:
    """A pod-isolation run whose spec names these pods' HOST_DATA, approved by its owners."""
    run_id = runs.submit(**runs.datasets(policy), workload={"isolation": "pod"})
    plan = plan_for(runs, run_id, work)
    driver = pods.driver_pod(plan, driver_argv, default_conf_dir())
    executor = pods.executor_pod(plan)
    with runs.emu.client("submitter") as c:
        c.set_workload(run_id, pods.workload(driver, executor))
    if approve:
        runs.approve(run_id)
    return PodRun(run_id, plan, driver, executor)


@contextmanager
def driver_pod_agent(runs: Runs, run_id: str, work: Path) -> Iterator[Path]:
    """The run's driver pod up to its key agent: verifier (claims), then the agent's socket."""
    plan = plan_for(runs, run_id, work)
    pod = pods.driver_pod(plan, STAND_IN_DRIVER, default_conf_dir())
    pods.run_verifier(pod, plan, "driver")
    with pods.key_agent(pod, plan, "driver") as socket:
        yield socket
