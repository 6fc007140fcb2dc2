"""``jobruntime submit``: the whole local flow of one job run, as a pod would live it.

1. Build the request (module digest, datasets and their keys) and submit it; the
   owners approve (the emulator's dev owner keys, or the real ``jobruntime approve``).
2. Describe the run's pods (``jobruntime.dev.pods``) and name their HOST_DATA in the
   spec before the owners approve it.
3. Launch the driver pod as a kubelet would: ``job-verifier``, then the key agent and
   the heartbeat sidecar, then the real ``spark-submit`` with ``spark-conf/`` on
   ``local[2]`` or a standalone master, running ``jobruntime.job.driver``; each with
   the HOST_DATA the launcher measured, in a memory-backed work directory.
4. Report where the encrypted result is.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy, RunState
from jobruntime.dataset.owner import describe
from jobruntime.dev import pods
from jobruntime.dev.cluster.standalone import StandaloneCluster
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.dev.follow import LogFollower, ProgressWatch, job_line, progress_line
from jobruntime.dev.localpod import LocalPod
from jobruntime.dev.process import ManagedProcess
from jobruntime.errors import ConfigError, JobRuntimeError, NotFoundError
from jobruntime.job import driver
from jobruntime.job import params as job_params
from jobruntime.signing.approvals import sign_approval
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.sparkconf.spark_home import spark_bin
from jobruntime.spec.models import JobRunRequest, utcnow
from jobruntime.storage.uri import open_storage
from jobruntime.verification.signed import verify_response

ROOT = Path(__file__).resolve().parents[2]
NATIVE_JAR = ROOT / "build" / "jobruntime-kms.jar"
LOCAL_IMAGE = "sha256:" + hashlib.sha256(b"jobruntime local image").hexdigest()
DEV_POLICY = ReleasePolicy(
    isolation=["pod", "node"],
    evidence_kinds=[EvidenceKind.SEV_SNP, EvidenceKind.AZURE_VTPM, EvidenceKind.EMULATED],
    measurements=[EMULATED_MEASUREMENT.hex()],
)
"""Local development keys: emulated evidence and node isolation allowed, said out loud."""

Report = Callable[[str], None]


@dataclass
class SubmitPlan:
    module: Path
    inputs: dict[str, str]
    outputs: dict[str, str]
    params: dict[str, Any]
    state: Path
    master: str = "local[2]"
    output_keys: dict[str, str] = field(default_factory=dict)
    auto_approve: bool = True
    spark_conf: dict[str, str] = field(default_factory=dict)
    conf_dir: Path = ROOT / "spark-conf"
    cluster_state: Path = Path(".state/cluster")
    heartbeat_interval: float = 10.0
    # The pod's memory-backed volume goes in a fresh 0700 directory made here.
    work_root: Path = Path("/dev/shm")  # noqa: S108


@dataclass(frozen=True)
class LocalRun:
    """A submitted run and the pods its spec names (HOST_DATA), ready to approve and launch."""

    run_id: str
    output_keys: dict[str, str]
    pod_plan: pods.PodPlan
    driver: LocalPod
    executor: LocalPod


@dataclass
class SubmitResult:
    run_id: str
    exit_code: int
    outputs: dict[str, str]
    output_keys: dict[str, str]
    timings: list[tuple[str, float]]
    driver_log: Path | None = None


@contextmanager
def emulator_for(state: Path) -> Iterator[EmulatorProcess]:
    """The emulator serving this state, started (and stopped) here if none is running."""
    running = EmulatorProcess.attach(state)
    if running is not None:
        yield running
        return
    with EmulatorProcess(state) as started:
        yield started


def _key_ids(plan: SubmitPlan) -> tuple[dict[str, str], dict[str, str]]:
    """Input keys from their manifests; output keys given or named after the first owner."""
    inputs = {}
    for name, uri in plan.inputs.items():
        inputs[name] = describe(open_storage(uri), uri).key_id
    owner = next(iter(inputs.values()), "org-a/").split("/", 1)[0]
    outputs = {name: plan.output_keys.get(name, f"{owner}/{name}") for name in plan.outputs}
    return inputs, outputs


def _ensure_keys(emu: EmulatorProcess, key_ids: list[str], report: Report) -> None:
    for key_id in key_ids:
        org = key_id.split("/", 1)[0]
        with emu.client(f"owner:{org}") as c:
            try:
                c.key_info(key_id)
            except NotFoundError:
                c.create_key(key_id, DEV_POLICY)
                report(
                    f"WARNING: created DEVELOPMENT key {key_id}: it accepts emulated evidence "
                    "and node isolation (which trusts the cluster's admins)"
                )


def build_request(
    plan: SubmitPlan, in_keys: dict[str, str], out_keys: dict[str, str]
) -> JobRunRequest:
    def dataset(name: str, uri: str, key_id: str) -> dict[str, str]:
        return {"name": name, "uri": uri, "key_id": key_id, "owner": key_id.split("/", 1)[0]}

    return JobRunRequest.model_validate(
        {
            "job_id": plan.module.stem.replace("_", "-"),
            "workspace": "local",
            "module": {
                "import_name": f"jobs.{plan.module.stem}",
                "sha256": hashlib.sha256(plan.module.read_bytes()).hexdigest(),
            },
            "image_digest": LOCAL_IMAGE,
            "parameters": plan.params,
            "inputs": [dataset(n, u, in_keys[n]) for n, u in plan.inputs.items()],
            "outputs": [dataset(n, u, out_keys[n]) for n, u in plan.outputs.items()],
        }
    )


def _approve(emu: EmulatorProcess, run_id: str, auto: bool, report: Report) -> None:
    with emu.client("submitter") as c:
        # The owners sign what they read: the spec as the control plane signed it.
        verified = verify_response(
            c.signed_run_bytes(run_id),
            TrustRoot.load(emu.trust_root),
            now=utcnow(),
            run_id=run_id,
            review=True,
        )
        if auto:
            for owner in verified.spec.approval_policy.required_owners:
                key = SigningKey.load(emu.owner_key(owner))
                with emu.client(f"owner:{owner}") as oc:
                    oc.approve(
                        run_id, sign_approval(verified.spec, verified.digest, owner, key, utcnow())
                    )
                report(f"{owner} approved {verified.digest[:19]}… (dev key)")
        deadline = time.monotonic() + 600
        while c.status(run_id).state is RunState.PENDING_APPROVAL:
            if time.monotonic() > deadline:
                raise ConfigError(f"{run_id} was not approved within 10 minutes")
            report(f"waiting for approvals: jobruntime approve {run_id} --owner ORG --key KEY")
            time.sleep(5)


def native_jar_conf(jar: Path = NATIVE_JAR) -> dict[str, str]:
    """The native Parquet path's jar (``make jar``) on the driver's and executors' class
    path, where this checkout has built it (the image has it in Spark's jars already);
    without it ``ctx`` takes the Python data source, with a warning."""
    if not jar.is_file():
        return {}
    return {"spark.driver.extraClassPath": str(jar), "spark.executor.extraClassPath": str(jar)}


def spark_submit_command(plan: SubmitPlan, work: Path) -> list[str]:
    """``spark-submit`` of the driver entry: local, or the standalone cluster of this state."""
    spark_conf = {**native_jar_conf(), **plan.spark_conf}
    if plan.master.startswith("spark://"):
        info = StandaloneCluster(plan.cluster_state).status()
        if info is None or info.master_url != plan.master:
            raise ConfigError(f"no cluster at {plan.master}: run `jobruntime cluster up` first")
        options = info.submit_args(work / "spark.properties", spark_conf)
    else:
        options = [
            "--master",
            plan.master,
            "--properties-file",
            str(plan.conf_dir / "spark-defaults.conf"),
        ]
        for key, value in spark_conf.items():
            options += ["--conf", f"{key}={value}"]
    return [str(spark_bin("spark-submit")), *options, driver.__file__]


def pod_plan(plan: SubmitPlan, emu: EmulatorProcess, run_id: str, work: Path) -> pods.PodPlan:
    return pods.PodPlan(
        run_id=run_id,
        control_plane_url=emu.url,
        token_file=work / "token",
        trust_root=emu.trust_root,
        module=plan.module.resolve(),
        image_digest=LOCAL_IMAGE,
        emulated_tee_dir=emu.state / "tee",
        work=work,
        heartbeat_interval=plan.heartbeat_interval,
    )


@contextmanager
def heartbeat_sidecar(pod: LocalPod, interval: float, log_path: Path) -> Iterator[ManagedProcess]:
    """The heartbeat sidecar beside the driver; it exits after the driver's final word."""
    proc = pod.managed(pods.HEARTBEAT, log_path).start()
    try:
        yield proc
    finally:
        if proc.wait(timeout=interval * 3 + 5) is None:  # its final heartbeat
            proc.stop()


def prepare(plan: SubmitPlan, emu: EmulatorProcess, work: Path, report: Report) -> LocalRun:
    """Submit the request, describe the run's pods and name their HOST_DATA in the spec."""
    in_keys, out_keys = _key_ids(plan)
    _ensure_keys(emu, list(out_keys.values()), report)
    with emu.client("submitter") as c:
        run_id = c.submit(build_request(plan, in_keys, out_keys)).run_id
        report(f"submitted {run_id}")
        pp = pod_plan(plan, emu, run_id, work)
        (work / "token").write_text(emu.token("verifier"))
        driver_pod = pods.driver_pod(pp, spark_submit_command(plan, work), plan.conf_dir)
        executor_pod = pods.executor_pod(pp)
        c.set_workload(run_id, pods.workload(driver_pod, executor_pod))
    report(f"driver pod HOST_DATA {driver_pod.host_data.hex()[:16]}… named in the spec")
    return LocalRun(run_id, out_keys, pp, driver_pod, executor_pod)


def submit(plan: SubmitPlan, report: Report, progress: Report | None = None) -> SubmitResult:
    """The whole local flow; ``report`` gets each step and job-log line, ``progress``
    (default ``report``) Spark's progress as it changes. Ctrl-C cancels the run."""
    timings: list[tuple[str, float]] = []

    @contextmanager
    def step(title: str) -> Iterator[None]:
        report(title)
        started = time.perf_counter()
        yield
        timings.append((title, time.perf_counter() - started))

    if not plan.module.is_file():
        raise ConfigError(f"no job module at {plan.module}")
    # Before any key is created, any run submitted or anything signed.
    job_params.check(plan.module, plan.params)
    with emulator_for(plan.state) as emu:
        work = Path(tempfile.mkdtemp(prefix="jobruntime-", dir=plan.work_root))
        try:
            with step("submit the run, name its pods, collect the owners' approvals"):
                run = prepare(plan, emu, work, report)
                _approve(emu, run.run_id, plan.auto_approve, report)
            log = plan.state / "runs" / f"{run.run_id}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            try:
                with step("job-verifier: checks 1-10, attestation and claim"):
                    pods.run_verifier(run.driver, run.pod_plan, "driver")
                with ExitStack() as stack:
                    with step("key agent: attest once, release the spec's keys"):
                        stack.enter_context(pods.key_agent(run.driver, run.pod_plan, "driver"))
                    stack.enter_context(
                        heartbeat_sidecar(
                            run.driver,
                            plan.heartbeat_interval,
                            plan.state / "runs" / f"heartbeat-{work.name}.log",
                        )
                    )
                    with step(f"spark-submit on {plan.master}"):
                        code = drive(run, emu, log, report, progress or report)
            except KeyboardInterrupt:  # before or while the driver runs: end the run too
                _cancel_quietly(emu, run.run_id)
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return SubmitResult(run.run_id, code, dict(plan.outputs), run.output_keys, timings, log)


def _cancel_quietly(emu: EmulatorProcess, run_id: str) -> None:
    with suppress(JobRuntimeError), emu.client("submitter", retry_for=2.0) as c:
        c.cancel(run_id, "cancelled with Ctrl-C by the submitter")


def drive(run: LocalRun, emu: EmulatorProcess, log: Path, report: Report, progress: Report) -> int:
    """The driver container until it exits, its job log and Spark's progress passed on.

    Ctrl-C cancels the run at the control plane: the order reaches the driver as in a pod
    (heartbeat sidecar, then the memory volume), so its Spark jobs stop, nothing half
    written is published and the run ends ``cancelled``. A second Ctrl-C stops the
    driver at once.
    """
    proc = run.driver.managed(pods.DRIVER, log).start()
    follower = LogFollower(log)
    watch = ProgressWatch(run.pod_plan.bundle_dir("driver"), run.run_id)
    shown, next_poll, cancelling = "", 0.0, False
    try:
        while True:
            try:
                code = proc.wait(0.25)
                for line in follower.lines():
                    text = job_line(line)
                    if text is not None:
                        report(text)
                if code is not None:
                    return code
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + 0.5
                    had_ui = watch.ui_url
                    now = watch.read()
                    if watch.ui_url and not had_ui:
                        report(f"Spark UI at {watch.ui_url}")
                    if now is not None and now.jobs_total and progress_line(now) != shown:
                        shown = progress_line(now)
                        progress(shown)
            except KeyboardInterrupt:
                if cancelling:
                    report("stopping the driver now")
                    proc.stop(grace=5.0)
                    raise
                cancelling = True
                report(f"Ctrl-C: cancelling {run.run_id} (Ctrl-C again to stop at once)")
                _cancel_quietly(emu, run.run_id)
    finally:
        proc.stop()


def driver_reason(log: Path) -> str:
    """The driver's one-line refusal, from the end of its log."""
    lines = [
        ln
        for ln in log.read_text(errors="replace").splitlines()
        if ln.startswith("jobruntime-driver: ")
    ]
    return lines[-1] if lines else "see the driver log"
