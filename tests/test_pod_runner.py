"""The local pod runner: the rendered YAML's pods started as a kubelet would, end to end.

First without Spark or a control plane: the YAML read back, each container's launch
(mapped paths, volumes of its own under /dev/shm, development-mode anchors, Secrets),
HOST_DATA the same for every pod of a role, and the kubelet's order (init containers,
sidecars until their startup probe passes, the main container, sidecars stopped).

Then real runs: the emulator and its KMS, ``jobruntime manifest`` as an operator runs
it (policy input, HOST_DATA named before approval, the manifest after), the verifier,
key agents and heartbeat as processes, real Spark on a standalone master with one
Worker per executor pod. Only the TEE is emulated.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from jobruntime.cli.main import main
from jobruntime.controlplane.api import RunState
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.dev.errors import PodFailedError, SecretMissingError, UnmappedPathError
from jobruntime.dev.image import DevImage
from jobruntime.dev.kubelet import Kubelet
from jobruntime.dev.launch import Anchors, PodBuilder, PodVolumes
from jobruntime.dev.manifest import application, documents, template
from jobruntime.dev.podrunner import PodRunner, RunnerConfig, RunResult
from jobruntime.dev.procs import cmdline
from jobruntime.k8s.render import to_yaml
from jobruntime.sparkconf.spark_home import default_conf_dir
from jobruntime.spec.models import JobRunRequest, PodRole
from jobruntime.workload.pod import host_data
from scripts.synthetic import customers, expected_overlap
from tests.conftest import DEV_POLICY, IMAGE, Runs
from tests.test_e2e import World, encrypt

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "k8s" / "golden" / "pod-isolation.yaml"
REPO = "registry.example.com/confidential-spark-runtime"
TOKEN = ("jobruntime-verifier-token", "token")
STORAGE = ("jobruntime-storage", "connection-string")
NET = ["--control-plane-cidr", "127.0.0.1/32", "--api-server-cidr", "127.0.0.1/32"]
# The same pod options for the policy input and the manifest: they are in the pods.
# 3 s: a run times out after 3 missed beats (9 s), which a loaded machine does not reach.
POD_FLAGS = ["--executor-memory", "1g", "--driver-memory", "1g", "--heartbeat-interval", "3"]


# --- without Spark: the YAML, the launches, HOST_DATA ---------------------------------


class StubSpark:
    """Spark's container as a short Python program (the real one is LocalSpark)."""

    def __init__(self, script: str = "pass") -> None:
        self.script = script

    def command(self, role: PodRole, volumes: PodVolumes, tpl: Any) -> list[str]:
        return [sys.executable, "-c", self.script]

    def environment(self, role: PodRole) -> dict[str, str]:
        return {}

    def files(self, role: PodRole) -> tuple[Path, ...]:
        return ()


def image_for(tmp: Path, venv_bin: Path | None = None) -> DevImage:
    (tmp / "jobs").mkdir(exist_ok=True)
    (tmp / "root.json").write_text("{}")
    return replace(
        DevImage.checkout(tmp / "root.json", jobs_dir=tmp / "jobs"),
        venv_bin=venv_bin or Path(sys.executable).parent,
    )


def anchors_for(tmp: Path) -> Anchors:
    module = tmp / "jobs" / "sample.py"
    module.write_text("def run(ctx):\n    return None\n")
    return Anchors("http://127.0.0.1:1", tmp / "tee", module, tmp / "root.json")


def test_the_golden_manifest_reads_back_as_its_pods() -> None:
    app = application(GOLDEN.read_text())
    assert app.executors == 2
    assert app.main_file == "local:///opt/jobruntime/driver.py"
    assert [(c.name, c.sidecar) for c in app.driver.init] == [
        ("job-verifier", False),
        ("key-agent", True),
        ("heartbeat", True),
    ]
    assert [c.name for c in app.executor.init] == ["job-verifier", "key-agent"]
    probe = app.driver.init[1].startup_probe
    assert probe is not None
    assert probe.command == ("/usr/bin/test", "-S", "/run/jobruntime/agent/agent.sock")
    assert {v.name: v.kind for v in app.driver.volumes}["jobruntime-run"] == "emptyDir"
    (spark,) = app.driver.containers
    assert not spark.command
    assert {e.name: e.secret for e in spark.env}["JOBRUNTIME_AZURE_CONNECTION_STRING"] == STORAGE


def test_the_yaml_is_read_without_a_yaml_library() -> None:
    docs = documents(GOLDEN.read_text())
    assert [d["kind"] for d in docs] == ["SparkApplication", "NetworkPolicy", "NetworkPolicy"]
    with pytest.raises(Exception, match="not JSON"):
        documents("---\nkind: SparkApplication\n")


def test_each_container_is_launched_from_the_yaml_with_its_pods_own_volumes(
    tmp_path: Path, shm_dir: Path
) -> None:
    app = application(GOLDEN.read_text())
    image, anchors = image_for(tmp_path), anchors_for(tmp_path)
    secrets_ = {TOKEN: "verifier-token", STORAGE: "AccountKey=secret-value"}
    builder = PodBuilder(image, anchors, StubSpark(), secrets_)
    volumes = PodVolumes.create(shm_dir, "driver", app.driver, secrets_)
    plan = builder.plan("driver", app.driver, volumes)
    run = volumes.source("jobruntime-run")
    token = volumes.source("jobruntime-token") / "token"
    verifier, agent, heartbeat, spark = (c.launch for c in plan.containers)
    # Commands through the mapping table, paths into this pod's volumes.
    assert verifier.argv[0] == str(Path(sys.executable).parent / "job-verifier")
    args = dict(zip(verifier.argv[1::2], verifier.argv[2::2], strict=False))
    assert args["--output-dir"] == str(run)
    assert args["--token-file"] == str(token)
    assert args["--mode"] == "driver"
    assert token.read_text() == "verifier-token"
    assert oct(token.stat().st_mode & 0o777) == oct(0o440)
    for kind in ("v", "t"):
        assert oct((volumes.root / kind).stat().st_mode & 0o777) == oct(0o700)
    assert oct(run.stat().st_mode & 0o777) == oct(0o700)
    # Development mode, with the anchors each program reads and nothing more.
    assert verifier.env["JOBRUNTIME_DEV"] == "1"
    assert verifier.env["JOB_MODULE_PATH"] == str(anchors.module)
    assert verifier.env["JOB_TEE"] == "emulated"
    assert "JOB_MODULE_PATH" not in agent.env and "JOB_CONTROL_PLANE_URL" in agent.env
    assert "JOB_CONTROL_PLANE_URL" not in spark.env
    assert set(verifier.files) == {anchors.module, anchors.trust_root}
    # The startup probe: the image's test, on this pod's socket.
    assert plan.containers[1].kind == "sidecar" and plan.containers[2].kind == "sidecar"
    assert plan.containers[1].probe == (
        str(image.test_bin),
        "-S",
        str(run / "agent" / "agent.sock"),
    )
    assert heartbeat.argv[heartbeat.argv.index("--interval") + 1] == "10"
    # Spark's container: its variables mapped, the storage secret's value passed, not measured.
    assert spark.env["JOB_KEYAGENT_SOCKET"] == str(run / "agent" / "agent.sock")
    assert spark.environment()["JOBRUNTIME_AZURE_CONNECTION_STRING"] == "AccountKey=secret-value"
    assert "secret-value" not in json.dumps([c.launch.measured() for c in plan.containers])
    measured_env = spark.measured()["env"]
    assert isinstance(measured_env, dict)
    assert measured_env["JOB_KEYAGENT_SOCKET"] == "/run/jobruntime/agent/agent.sock"
    volumes.remove()
    assert not volumes.root.exists()


def test_every_executor_pod_measures_the_same_and_one_variable_makes_another(
    tmp_path: Path, shm_dir: Path
) -> None:
    app = application(GOLDEN.read_text())
    secrets_ = {TOKEN: "t", STORAGE: "s"}
    builder = PodBuilder(image_for(tmp_path), anchors_for(tmp_path), StubSpark(), secrets_)

    def measured(tpl: Any, name: str) -> bytes:
        volumes = PodVolumes.create(shm_dir, name, tpl, secrets_)
        return host_data([c.launch for c in builder.plan(name, tpl, volumes).containers])

    one, two = measured(app.executor, "exec-1"), measured(app.executor, "exec-2")
    assert one == two
    assert measured(app.driver, "driver") != one
    # Another storage connection string: the same pods (a secret's value is not measured).
    other = PodBuilder(
        image_for(tmp_path), anchors_for(tmp_path), StubSpark(), {TOKEN: "t", STORAGE: "x"}
    )
    volumes = PodVolumes.create(shm_dir, "exec-3", app.executor, secrets_)
    plan = other.plan("exec-3", app.executor, volumes)
    assert host_data([c.launch for c in plan.containers]) == one
    # One variable of the executor container changed in the YAML: another pod.
    docs = documents(GOLDEN.read_text())
    env = docs[0]["spec"]["executor"]["template"]["spec"]["containers"][0]["env"]
    env[0]["value"] = "/run/jobruntime/agent/other.sock"
    changed = application(to_yaml(docs)).executor
    assert measured(changed, "exec-4") != one


def test_paths_and_secrets_the_runner_cannot_provide_are_refused(
    tmp_path: Path, shm_dir: Path
) -> None:
    app = application(GOLDEN.read_text())
    builder = PodBuilder(image_for(tmp_path), anchors_for(tmp_path), StubSpark(), {TOKEN: "t"})
    volumes = PodVolumes.create(shm_dir, "driver", app.driver, {TOKEN: "t"})
    with pytest.raises(SecretMissingError, match="jobruntime-storage"):
        builder.plan("driver", app.driver, volumes)
    volumes.remove()
    with pytest.raises(SecretMissingError, match="jobruntime-verifier-token"):  # made nothing
        PodVolumes.create(shm_dir, "driver", app.driver, {})
    docs = documents(GOLDEN.read_text())
    pod = docs[0]["spec"]["driver"]["template"]
    pod["spec"]["initContainers"][0]["args"] += ["--trust-root", "/etc/elsewhere/root.json"]
    tpl = template(pod, "driver")
    with pytest.raises(UnmappedPathError, match=r"/etc/elsewhere/root\.json"):
        builder.plan("driver", tpl, PodVolumes(tmp_path / "unmade"))
    pod["spec"]["initContainers"][0]["command"] = ["/bin/sh"]
    with pytest.raises(UnmappedPathError, match="not one of the image's programs"):
        builder.plan("driver", template(pod, "driver"), PodVolumes(tmp_path / "unmade"))
    assert list(shm_dir.iterdir()) == []


# A pod of stand-ins for the image's programs: each notes when it ran in the pod's volume.
STEP = """\
import json, os, sys
from pathlib import Path
name, order, code = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
with order.open("a") as f:
    f.write(name + "\\n")
if code:
    Path(os.environ["JOB_TERMINATION_LOG"]).write_text(json.dumps({"code": "step.refused"}))
sys.exit(code)
"""
SIDECAR = """\
import os, signal, socket, sys, time
from pathlib import Path
sock, order, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
if delay < 0:
    print("sidecar: cannot start")
    sys.exit(5)
time.sleep(delay)
sock.parent.mkdir(mode=0o700, exist_ok=True)
s = socket.socket(socket.AF_UNIX)
s.bind(str(sock))
with order.open("a") as f:
    f.write("sidecar-up\\n")
def stop(*_):
    with order.open("a") as f:
        f.write("sidecar-stopped\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""
MAIN = """\
import os
from pathlib import Path
order = Path(os.environ["ORDER"])
assert Path(os.environ["SOCK"]).is_socket()
with order.open("a") as f:
    f.write("main\\n")
"""


def stand_in_pod(tmp: Path, step_code: int = 0, sidecar_delay: float = 0.5) -> Any:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("step", STEP), ("sidecar", SIDECAR)):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{body}")
        (bin_dir / name).chmod(0o755)
    order, sock = "/run/jobruntime/order", "/run/jobruntime/agent/agent.sock"
    run_mount = [{"name": "run", "mountPath": "/run/jobruntime"}]
    doc = {
        "spec": {
            "initContainers": [
                {
                    "name": "first",
                    "command": ["/opt/jobruntime/venv/bin/step"],
                    "args": ["first", order, str(step_code)],
                    "volumeMounts": run_mount,
                },
                {
                    "name": "agent",
                    "restartPolicy": "Always",
                    "command": ["/opt/jobruntime/venv/bin/sidecar"],
                    "args": [sock, order, str(sidecar_delay)],
                    "volumeMounts": run_mount,
                    "startupProbe": {
                        "exec": {"command": ["/usr/bin/test", "-S", sock]},
                        "periodSeconds": 1,
                        "failureThreshold": 10,
                    },
                },
            ],
            "containers": [
                {
                    "name": "spark-kubernetes-driver",
                    "env": [{"name": "ORDER", "value": order}, {"name": "SOCK", "value": sock}],
                    "volumeMounts": run_mount,
                }
            ],
            "volumes": [{"name": "run", "emptyDir": {"medium": "Memory"}}],
        }
    }
    tpl = template(doc, "driver")
    builder = PodBuilder(image_for(tmp, bin_dir), anchors_for(tmp), StubSpark(MAIN), {})
    return tpl, builder


def test_init_then_sidecars_until_their_probe_then_main_then_sidecars_stop(
    tmp_path: Path, shm_dir: Path
) -> None:
    tpl, builder = stand_in_pod(tmp_path)
    volumes = PodVolumes.create(shm_dir, "pod", tpl, {})
    kubelet = Kubelet(builder.plan("pod", tpl, volumes), tmp_path / "logs", grace=5)
    try:
        kubelet.start_init()
        kubelet.start_main()
        status = kubelet.wait_main(60)
        assert status.exit_code == 0, status.message
        order = (volumes.source("run") / "order").read_text().split()
        assert order == ["first", "sidecar-up", "main", "sidecar-stopped"]
        assert kubelet.running == {}
        assert kubelet.statuses["agent"].exit_code == 0  # it stopped on SIGTERM
    finally:
        kubelet.stop()
        volumes.remove()


def test_a_failing_init_container_fails_the_pod_with_its_termination_message(
    tmp_path: Path, shm_dir: Path
) -> None:
    tpl, builder = stand_in_pod(tmp_path, step_code=3)
    volumes = PodVolumes.create(shm_dir, "pod", tpl, {})
    kubelet = Kubelet(builder.plan("pod", tpl, volumes), tmp_path / "logs")
    try:
        with pytest.raises(PodFailedError) as info:
            kubelet.start_init()
        status = info.value.status
        assert (status.container, status.exit_code) == ("first", 3)
        assert status.termination() == {"code": "step.refused"}
        assert (volumes.source("run") / "order").read_text().split() == ["first"]
        assert kubelet.running == {}  # nothing after it started
    finally:
        kubelet.stop()
        volumes.remove()


def test_a_sidecar_that_dies_before_its_probe_passes_fails_the_pod_with_its_log(
    tmp_path: Path, shm_dir: Path
) -> None:
    tpl, builder = stand_in_pod(tmp_path, sidecar_delay=-1)
    volumes = PodVolumes.create(shm_dir, "pod", tpl, {})
    kubelet = Kubelet(builder.plan("pod", tpl, volumes), tmp_path / "logs")
    try:
        with pytest.raises(PodFailedError) as info:
            kubelet.start_init()
        status = info.value.status
        assert (status.container, status.exit_code) == ("agent", 5)
        assert "sidecar: cannot start" in status.message  # FallbackToLogsOnError
    finally:
        kubelet.stop()
        volumes.remove()


def test_no_pod_entrypoint_imports_the_development_package() -> None:
    probe = textwrap.dedent(
        """
        import sys
        import verifier.cli, jobruntime.keyagent.cli, heartbeat.cli, jobruntime.job.driver
        import jobruntime.datasource.source
        print(sorted(m for m in sys.modules if m.startswith("jobruntime.dev")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


# --- real runs: the emulator, jobruntime manifest, Spark -------------------------------


@pytest.fixture(scope="module")
def data(emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two owners' encrypted tables, four files each (so both executors read both)."""
    tmp = tmp_path_factory.mktemp("podrunner-data")
    a, b = customers(seed=23, size=400, shared=200)
    tag = secrets.token_hex(3)
    inputs, keys = {}, {}
    for name, df, org in (("customers_a", a, "org-a"), ("customers_b", b, "org-b")):
        uri = f"file://{tmp / name}"
        key_id = f"{org}/{name}-{tag}"
        keys[key_id] = encrypt(emulator, df, uri, key_id, rows_per_file=100)
        inputs[name] = uri
    return World(emulator, tmp, a, b, inputs, keys, tmp)


@dataclass
class Staged:
    """A pod-isolation run whose spec names the runner's HOST_DATA, approved, rendered."""

    run_id: str
    yaml: str
    module: Path
    output: str
    output_key: str
    host_data: dict[PodRole, str]


def manifest(emu: EmulatorProcess, run_id: str, *extra: str) -> None:
    args = ["manifest", run_id, "--emulator-state", str(emu.state), "--image-repo", REPO]
    code = main([*args, "--conf-dir", str(default_conf_dir()), *NET, *POD_FLAGS, *extra])
    assert code == 0


def submit(data: World, tmp: Path) -> tuple[str, Path, str, str]:
    """The overlap job in pod isolation, its module in this test's jobs/ directory."""
    module = tmp / "jobs" / "overlap.py"
    module.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "jobs" / "overlap.py", module)
    output = f"file://{tmp / 'overlap'}"
    out_key = f"org-a/overlap-{secrets.token_hex(3)}"
    with data.emu.client("owner:org-a") as c:
        c.create_key(out_key, DEV_POLICY)

    def dataset(name: str, uri: str, key_id: str) -> dict[str, str]:
        return {"name": name, "uri": uri, "key_id": key_id, "owner": key_id.split("/")[0]}

    key_of = {k.split("/")[1].rsplit("-", 1)[0]: k for k in data.keys}
    request = JobRunRequest.model_validate(
        {
            "job_id": "overlap",
            "workspace": "podrunner",
            "module": {
                "import_name": "jobs.overlap",
                "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
            },
            "image_digest": IMAGE,
            "parameters": {"k": 10},
            "inputs": [dataset(n, u, key_of[n]) for n, u in data.inputs.items()],
            "outputs": [dataset("overlap", output, out_key)],
            "workload": {"isolation": "pod"},
        }
    )
    with data.emu.client("submitter") as c:
        return c.submit(request).run_id, module, output, out_key


def stage(data: World, runner: PodRunner, tmp: Path) -> Staged:
    """As an operator: measure the pods, name HOST_DATA, owners approve, render the run."""
    run_id, module, output, out_key = submit(data, tmp)
    measured: dict[PodRole, str] = {}
    roles: tuple[PodRole, ...] = ("driver", "executor")
    for role in roles:
        pod = tmp / f"{role}-pod.yaml"
        manifest(data.emu, run_id, "--policy-input", role, "-o", str(pod))
        measured[role] = runner.host_data(pod.read_text(), role)
    named = [f"--host-data={role}={value}" for role, value in measured.items()]
    manifest(data.emu, run_id, *named, "--set-workload")
    Runs(data.emu, tmp).approve(run_id)
    manifest(data.emu, run_id, "-o", str(tmp / "app.yaml"))
    text = (tmp / "app.yaml").read_text()
    for role, value in measured.items():  # the application's pods are the ones measured
        assert runner.host_data(text, role) == value
    return Staged(run_id, text, module, output, out_key, measured)


def config(data: World, tmp: Path, shm: Path) -> RunnerConfig:
    return RunnerConfig(
        image=DevImage.checkout(data.emu.trust_root, jobs_dir=tmp / "jobs"),
        control_plane_url=data.emu.url,
        emulated_tee_dir=data.emu.state / "tee",
        secrets={TOKEN: data.emu.token("verifier")},
        state_dir=tmp / "runner",
        work_root=shm,
        worker_memory="1g",
        spark_conf={"spark.sql.shuffle.partitions": "4"},
        grace=10.0,
    )


@pytest.fixture
def runner(data: World, tmp_path: Path, shm_dir: Path) -> Iterator[PodRunner]:
    """A runner of this test's own; whatever happened, it leaves nothing behind."""
    with PodRunner(config(data, tmp_path, shm_dir)) as r:
        master = dict(r.spark.cluster.pids)
        yield r
    assert list(shm_dir.iterdir()) == []  # every pod's volumes removed
    assert leftovers(shm_dir) == [] and leftovers(tmp_path) == []
    assert [pid for pid in master.values() if cmdline(pid) is not None] == []


def leftovers(path: Path) -> list[int]:
    """Live processes that name ``path`` in their arguments or work inside it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        args = cmdline(int(entry.name))
        if args is None:
            continue
        try:
            cwd = str((entry / "cwd").readlink())
        except OSError:
            cwd = ""
        if any(str(path) in a for a in args) or cwd.startswith(str(path)):
            found.append(int(entry.name))
    return found


def audit(emu: EmulatorProcess, run_id: str, event: str) -> list[dict[str, Any]]:
    with emu.client("operator") as c:
        return [e.details for e in c.audit().entries if e.run_id == run_id and e.event == event]


def explain(result: RunResult) -> str:
    f = result.failure or result.driver
    if f is None:
        return "no driver"
    tail = f.log.read_text(errors="replace")[-3000:] if f.log.exists() else ""
    return f"{f.pod}/{f.container} exit {f.exit_code}: {f.message}\n{tail}"


@pytest.mark.slow
def test_a_rendered_run_runs_end_to_end_with_an_agent_per_executor_pod(
    data: World, runner: PodRunner, tmp_path: Path
) -> None:
    staged = stage(data, runner, tmp_path)
    result = runner.run(staged.yaml)
    assert result.succeeded, explain(result)
    # Spark's native Parquet path, as in the image (the checkout's jar on the class path).
    assert result.driver is not None
    assert "native_parquet_unavailable" not in result.driver.log.read_text()
    # The owner decrypts the right answer.
    table = data.decrypt(staged.output, staged.output_key)
    got = {r["segment"]: r["customers"] for r in table.to_pylist()}
    assert got == expected_overlap(data.a, data.b, k=10)
    # One driver pod and two executor pods, each launched with its role's HOST_DATA.
    executors = result.role("executor")
    assert len(result.role("driver")) == 1 and len(executors) == 2
    for pod in result.pods.values():
        assert pod.host_data == staged.host_data[pod.role]
        assert pod.pod_id is not None
    # Three key agents (one per pod), each attested with its pod's HOST_DATA.
    attested = audit(data.emu, staged.run_id, "run.attested")
    agents = {a["pod"]: a for a in attested if a["purpose"] == "key-agent"}
    assert set(agents) == {p.pod_id for p in result.pods.values()}
    for pod in result.pods.values():
        assert agents[pod.pod_id]["host_data"] == staged.host_data[pod.role]
        assert agents[pod.pod_id]["role"] == pod.role
    # One release per dataset per agent, and every executor used its own pod's agent.
    released = Counter(
        (r["pod"], r["dataset"]) for r in audit(data.emu, staged.run_id, "kms.released")
    )
    assert released and max(released.values()) == 1, released
    by_pod = {p: {d for (q, d) in released if q == p} for p in agents}
    print({pod.name.rsplit("-", 1)[-1]: sorted(by_pod[pod.pod_id]) for pod in result.pods.values()})
    for pod in executors:
        assert by_pod[pod.pod_id] & {"customers_a", "customers_b"}, by_pod
    assert {"customers_a", "customers_b"} <= set().union(*(by_pod[p.pod_id] for p in executors))
    assert len(audit(data.emu, staged.run_id, "kms.spark_secret_released")) == 3
    # The outcome reaches the control plane only in the heartbeat sidecar's final beat,
    # and a kubelet stops sidecars (SIGTERM) as soon as the driver has exited: the beat
    # is sent only if the sidecar's next interval came first (3 s here), so the run may
    # still read claimed. When it ended, it ended with the output the driver wrote.
    with data.emu.client("operator") as c:
        status = c.status(staged.run_id)
    print(f"run state after the pods ended: {status.state.value}")
    assert status.state in (RunState.SUCCEEDED, RunState.CLAIMED)
    if status.state is RunState.SUCCEEDED:
        assert [o.dataset for o in status.outputs] == ["overlap"]


@pytest.mark.slow
def test_an_executor_pod_with_one_variable_changed_in_the_yaml_gets_nothing(
    data: World, runner: PodRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staged = stage(data, runner, tmp_path)
    docs = documents(staged.yaml)
    (spark,) = docs[0]["spec"]["executor"]["template"]["spec"]["containers"]
    (socket_var,) = [e for e in spark["env"] if e["name"] == "JOB_KEYAGENT_SOCKET"]
    socket_var["value"] = "/run/jobruntime/agent/elsewhere.sock"
    result = runner.run(to_yaml(docs))
    assert result.failure is not None and result.driver is None, explain(result)
    assert (result.failure.pod, result.failure.container) == (
        f"{staged.run_id}-exec-1",
        "job-verifier",
    ), explain(result)
    assert result.failure.exit_code == 18
    said = result.failure.termination()
    assert said is not None
    assert (said["code"], said["role"], said["step"]) == ("attestation.host_data", "executor", 9)
    # Measured as another pod: refused at its first attestation; it never got a session.
    (pod,) = [p for p in result.pods.values() if p.name.endswith("-exec-1")]
    assert pod.host_data != staged.host_data["executor"]
    denied = audit(data.emu, staged.run_id, "kms.attest_denied")
    assert [d["reason"] for d in denied] == ["attestation.host_data"]
    attested = audit(data.emu, staged.run_id, "run.attested")
    assert {a["role"] for a in attested} == {"driver"}
    assert audit(data.emu, staged.run_id, "kms.released") == []  # nothing, to anyone
    capsys.readouterr()
    assert main(["runs", "status", staged.run_id, "--emulator-state", str(data.emu.state)]) == 0
    refusals = json.loads(capsys.readouterr().out)["refusals"]
    assert [(r["role"], r["code"], r["exit_code"]) for r in refusals] == [
        ("executor", "attestation.host_data", 18)
    ]


@pytest.mark.slow
def test_a_module_changed_after_approval_is_refused_and_runs_status_says_why(
    data: World, runner: PodRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staged = stage(data, runner, tmp_path)
    staged.module.write_text(staged.module.read_text() + "\n# changed after approval\n")
    result = runner.run(staged.yaml)
    assert result.failure is not None and result.driver is None, explain(result)
    assert (result.failure.pod, result.failure.container, result.failure.exit_code) == (
        f"{staged.run_id}-driver",
        "job-verifier",
        16,
    )
    said = result.failure.termination()
    assert said is not None and (said["code"], said["step"]) == ("digest.module", 7)
    assert list(result.pods) == [f"{staged.run_id}-driver"]  # no executor pod started
    capsys.readouterr()
    assert main(["runs", "status", staged.run_id, "--emulator-state", str(data.emu.state)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "approved"  # nothing claimed
    assert [(r["role"], r["code"], r["exit_code"], r["step"]) for r in status["refusals"]] == [
        ("driver", "digest.module", 16, 7)
    ]
    assert audit(data.emu, staged.run_id, "kms.released") == []


@pytest.mark.slow
def test_a_run_that_breaks_off_midway_leaves_nothing_behind(
    data: World, runner: PodRunner, tmp_path: Path
) -> None:
    """The driver pod is up (verifier, agent, heartbeat) when an executor pod cannot be
    made: the error comes out, and the runner fixture checks every process and volume
    is gone."""
    staged = stage(data, runner, tmp_path)
    docs = documents(staged.yaml)
    (spark,) = docs[0]["spec"]["executor"]["template"]["spec"]["containers"]
    ref = {"secretKeyRef": {"name": "jobruntime-storage", "key": "connection-string"}}
    spark["env"].append({"name": "JOBRUNTIME_AZURE_CONNECTION_STRING", "valueFrom": ref})
    with pytest.raises(SecretMissingError, match="jobruntime-storage"):
        runner.run(to_yaml(docs))
    attested = {(a["role"], a["purpose"]) for a in audit(data.emu, staged.run_id, "run.attested")}
    assert {("driver", "verifier"), ("driver", "key-agent")} <= attested  # it was up
    assert {role for role, _ in attested} == {"driver"}
