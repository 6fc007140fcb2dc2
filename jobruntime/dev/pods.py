"""The pods of one local run, as a SparkApplication would describe them, and their launch.

The driver pod: ``job-verifier`` (init), the key agent and the heartbeat sidecar, and
the Spark driver (``spark-submit`` of ``jobruntime.job.driver``). An executor pod:
``job-verifier --mode executor`` and its own key agent. Each container runs in
development mode (local paths and the emulator's URL come from its flags, and it
says so) with the emulated TEE, and every argument, measured variable and trusted
file goes into the pod's HOST_DATA (``jobruntime.workload.pod``), which the run's
spec names before the owners approve it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jobruntime.dev.localpod import LocalPod
from jobruntime.dev.process import ProcessStartError
from jobruntime.errors import ConfigError, JobRuntimeError
from jobruntime.sparkconf.spark_home import spark_env
from jobruntime.spec.models import Workload
from jobruntime.verification.pinned import DEV_ENV
from jobruntime.workload.pod import ContainerLaunch

VERIFIER, KEY_AGENT, HEARTBEAT, DRIVER = "job-verifier", "key-agent", "heartbeat", "driver"
_DEV = {DEV_ENV: "1"}
# What spark_env sets for every Spark process: measured; the rest of the machine's
# environment (HOME, locale...) is the machine's own and is not.
_SPARK_KEYS = (
    "SPARK_HOME",
    "SPARK_CONF_DIR",
    "JAVA_HOME",
    "PYSPARK_PYTHON",
    "PYSPARK_DRIVER_PYTHON",
    "PATH",
    "SPARK_LOCAL_IP",
)


@dataclass(frozen=True)
class PodPlan:
    """What a local pod of a run is given: the same for the driver and executor pods."""

    run_id: str
    control_plane_url: str
    token_file: Path
    trust_root: Path
    module: Path
    image_digest: str
    emulated_tee_dir: Path
    work: Path
    heartbeat_interval: float = 10.0
    verifier_deadline: float = 60.0

    def bundle_dir(self, role: str) -> Path:
        return self.work / role / "bundle"

    def socket(self, role: str) -> Path:
        return self.work / role / "agent" / "agent.sock"

    def spark_secret(self, role: str) -> Path:
        """Where the pod's key agent writes the run's Spark secret (the memory volume)."""
        return self.work / role / "agent" / "spark-auth-secret"


def verifier_container(plan: PodPlan, role: str) -> ContainerLaunch:
    argv = [
        sys.executable,
        "-m",
        "verifier",
        "--run-id",
        plan.run_id,
        "--control-plane-url",
        plan.control_plane_url,
        "--token-file",
        str(plan.token_file),
        "--trust-root",
        str(plan.trust_root),
        "--module",
        str(plan.module),
        "--image-digest",
        plan.image_digest,
        "--output-dir",
        str(plan.bundle_dir(role)),
        "--termination-log",
        str(plan.work / role / "termination-log"),
        "--deadline",
        str(plan.verifier_deadline),
        "--mode",
        role,
        "--tee",
        "emulated",
        "--emulated-tee-dir",
        str(plan.emulated_tee_dir),
    ]
    return ContainerLaunch(VERIFIER, tuple(argv), _DEV, (plan.module, plan.trust_root))


def key_agent_container(plan: PodPlan, role: str) -> ContainerLaunch:
    argv = [
        sys.executable,
        "-m",
        "jobruntime.keyagent",
        "--socket",
        str(plan.socket(role)),
        "--spark-secret-file",
        str(plan.spark_secret(role)),
        "--bundle-dir",
        str(plan.bundle_dir(role)),
        "--control-plane-url",
        plan.control_plane_url,
        "--trust-root",
        str(plan.trust_root),
        "--token-file",
        str(plan.token_file),
        "--tee",
        "emulated",
        "--emulated-tee-dir",
        str(plan.emulated_tee_dir),
    ]
    return ContainerLaunch(KEY_AGENT, tuple(argv), _DEV, (plan.trust_root,))


def heartbeat_container(plan: PodPlan) -> ContainerLaunch:
    from heartbeat.cli import command

    argv = command(
        plan.bundle_dir("driver"),
        plan.control_plane_url,
        plan.token_file,
        plan.emulated_tee_dir,
        plan.heartbeat_interval,
        trust_root=plan.trust_root,
    )
    return ContainerLaunch(HEARTBEAT, tuple(argv), _DEV, (plan.trust_root,))


def driver_container(plan: PodPlan, submit_argv: Sequence[str], conf_dir: Path) -> ContainerLaunch:
    spark = spark_env(conf_dir)
    env = {k: spark[k] for k in _SPARK_KEYS}
    env.update(
        _DEV,
        JOB_BUNDLE_DIR=str(plan.bundle_dir("driver")),
        JOB_KEYAGENT_SOCKET=str(plan.socket("driver")),
        JOB_MODULE_PATH=str(plan.module),
        JOB_TRUST_ROOT=str(plan.trust_root),
    )
    conf = tuple(sorted(p for p in conf_dir.iterdir() if p.is_file()))  # Spark's settings
    return ContainerLaunch(DRIVER, tuple(submit_argv), env, (plan.module, plan.trust_root, *conf))


def driver_pod(plan: PodPlan, submit_argv: Sequence[str], conf_dir: Path) -> LocalPod:
    return LocalPod.of(
        [
            verifier_container(plan, "driver"),
            key_agent_container(plan, "driver"),
            heartbeat_container(plan),
            driver_container(plan, submit_argv, conf_dir),
        ]
    )


def executor_pod(plan: PodPlan) -> LocalPod:
    return LocalPod.of(
        [verifier_container(plan, "executor"), key_agent_container(plan, "executor")]
    )


def workload(driver: LocalPod, executor: LocalPod) -> Workload:
    """What the run's spec names, so the owners approve these exact pods."""
    return Workload(
        isolation="pod",
        host_data={"driver": driver.host_data.hex(), "executor": executor.host_data.hex()},
    )


def run_verifier(pod: LocalPod, plan: PodPlan, role: str) -> None:
    """The init container: its one-line refusal (termination message) becomes the error."""
    (plan.work / role).mkdir(parents=True, exist_ok=True)
    proc = pod.run(VERIFIER, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        log = plan.work / role / "termination-log"
        reason = log.read_text() if log.exists() else proc.stderr.strip()[-500:]
        raise JobRuntimeError(f"job-verifier refused the run: {reason}")


@contextmanager
def key_agent(pod: LocalPod, plan: PodPlan, role: str, timeout: float = 60) -> Iterator[Path]:
    """The key-agent sidecar, up once its socket exists; stopped (socket removed) after."""
    socket = plan.socket(role)
    socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    proc = pod.managed(KEY_AGENT, plan.work / role / "key-agent.log").start()
    try:
        try:
            proc.wait_ready(socket.exists, timeout, "its socket")
        except ProcessStartError:
            proc.stop()
            err = proc.log.read_text(errors="replace")
            lines = [ln for ln in err.splitlines() if ln.startswith("keyagent: ")]
            raise ConfigError(f"key agent did not start: {(lines or [err[-300:]])[-1]}") from None
        yield socket
    finally:
        proc.stop()
