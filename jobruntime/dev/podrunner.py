"""The local pod runner: a rendered run's pods started on this machine, as a cluster would.

A development harness (never imported by a pod entrypoint). It reads the YAML that
``jobruntime manifest`` renders and does what the Spark Operator, Spark, the kubelet
and the host would do with it, with local processes:

1. the driver pod: ``job-verifier`` (claims the run), the key agent (until its
   startup probe, ``test -S`` on its socket, passes) and the heartbeat sidecar;
2. one pod per executor the SparkApplication asks for: the verifier in executor mode
   (joins the run), its own key agent, and as its main container a standalone Worker
   whose environment carries the pod's ``JOB_KEYAGENT_SOCKET`` (a Worker's executors
   inherit its environment, and the data source prefers that variable to the driver's
   socket in the query plan, ``jobruntime.datasource.options``);
3. the driver's main container: ``spark-submit`` of the driver entry against the
   runner's standalone master, with the sizes the SparkApplication names;
4. then, as a kubelet ends pods whose main container is done: the executor pods'
   Workers (and their executors) and every sidecar get SIGTERM, SIGKILL after a grace
   period; every pod's volumes under ``/dev/shm`` are removed.

Each pod is a :class:`~jobruntime.dev.localpod.LocalPod` of the containers the YAML
describes (:mod:`jobruntime.dev.launch`), so its HOST_DATA is the same function of
what is launched as for ``jobruntime submit``'s pods, handed to the emulated TEE.
:meth:`PodRunner.host_data` computes a role's value from the YAML (the SparkApplication
or ``--policy-input``'s Pod) before approval, for the spec to name.

**Development mode.** Outside the image the fixed anchors (``/etc/jobruntime``'s trust
root and ``runtime.json``, ``/opt/jobruntime/jobs``) do not exist, and the programs
take them from flags or the environment only in development mode
(``jobruntime.verification.pinned``): every container runs with ``JOBRUNTIME_DEV=1``
and exactly the anchors that mode allows, as variables (the emulator's trust root and
URL, the job module's mapped file, the emulated TEE), each program the ones it reads.
Every component says so on start. This is for development data only.

**Spark off Kubernetes.** The standalone cluster keeps its own secret (the Spark
secret that each pod's key agent writes is read by Spark on Kubernetes only): the
master has it in its environment, the Workers and the driver in 0600 properties files
in the runner's state directory, none of which a pod's measurement covers (as Spark's
own ConfigMap is not in a pod template). ``spark-conf/`` (the image's
``/opt/spark/conf``) is in force; the SparkApplication's ``sparkConf`` goes to the
driver without the Kubernetes-only settings (the secret files, ``spark.kubernetes.*``,
the Java option naming the image's copy of the logging rules), image paths mapped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.dev.cluster.info import ClusterInfo, write_private
from jobruntime.dev.cluster.standalone import (
    DAEMON_SETTINGS,
    StandaloneCluster,
    alive_workers,
    master_status,
    worker_command,
)
from jobruntime.dev.errors import ContainerStatus, PodFailedError, PodRunnerError
from jobruntime.dev.image import DRIVER_ENTRY, LOCAL_SCHEME, SPARK_HOME, DevImage
from jobruntime.dev.kubelet import Kubelet
from jobruntime.dev.launch import Anchors, PodBuilder, PodVolumes, Secrets
from jobruntime.dev.manifest import Application, PodTemplate, application, documents, pod_template
from jobruntime.dev.submit import native_jar_conf
from jobruntime.k8s import layout
from jobruntime.k8s.options import DEFAULT_TOKEN_SECRET
from jobruntime.k8s.source import verified_run
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.sparkconf.check import DRIVER_SECRET_FILE, EXECUTOR_SECRET_FILE, SECRET_FILE
from jobruntime.sparkconf.spark_home import spark_env
from jobruntime.spec.models import PodRole
from jobruntime.verification.bundle import BUNDLE_NAME

SPARK_KEYS = (
    "SPARK_HOME",
    "SPARK_CONF_DIR",
    "JAVA_HOME",
    "PYSPARK_PYTHON",
    "PYSPARK_DRIVER_PYTHON",
    "PATH",
    "SPARK_LOCAL_IP",
)
"""What every Spark process of ours runs with (``spark_env``): measured."""
WORKER_KEYS = ("SPARK_DAEMON_JAVA_OPTS", "SPARK_DAEMON_MEMORY", "SPARK_WORKER_OPTS")
KUBERNETES_ONLY = (SECRET_FILE, DRIVER_SECRET_FILE, EXECUTOR_SECRET_FILE)
"""Spark refuses (local) or ignores (standalone) the secret files off Kubernetes."""
JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")
KUBERNETES_LOGGING = f"-Dlog4j2.configurationFile=file:{layout.LOG4J2_CONFIG}"
"""What ``jobruntime manifest`` adds to the JVMs' options (``checked_spark_conf``)."""
_MEMORY = re.compile(r"([1-9][0-9]*)([kmgt])b?", re.IGNORECASE)


@dataclass(frozen=True)
class RunnerConfig:
    """Where the runner finds the image's paths and the control plane, and its limits."""

    image: DevImage
    control_plane_url: str
    emulated_tee_dir: Path
    secrets: Secrets = field(repr=False)
    """The "Kubernetes Secrets" the pods read: ``(name, key)`` → value."""
    state_dir: Path
    """Logs (0600) and the cluster's state: the caller's, kept after the run."""
    work_root: Path = Path("/dev/shm")  # noqa: S108 - memory-backed, as emptyDir medium Memory
    """Where each pod's volumes are made (fresh 0700 directories, removed after)."""
    token_secret: tuple[str, str] = (DEFAULT_TOKEN_SECRET, layout.TOKEN_KEY)
    """The verifier token's Secret key: the runner reads the run's spec with it."""
    worker_cores: int = 1
    worker_memory: str = "2g"
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    """Extra settings for the driver (tuning, not secrets), on top of the application's."""
    grace: float = 30.0
    """terminationGracePeriodSeconds: SIGTERM, then SIGKILL after this."""
    init_timeout: float = 120.0
    worker_timeout: float = 90.0
    main_timeout: float = 900.0


@dataclass
class PodResult:
    """One pod: its containers' ends, its pod id (from its bundle) and HOST_DATA as launched."""

    name: str
    role: PodRole
    host_data: str | None
    """As its containers were launched (None: none was)."""
    pod_id: str | None = None
    containers: dict[str, ContainerStatus] = field(default_factory=dict)


@dataclass
class RunResult:
    run_id: str
    pods: dict[str, PodResult] = field(default_factory=dict)
    failure: ContainerStatus | None = None
    """The first container that failed (an init container, a probe, a main container)."""
    driver: ContainerStatus | None = None
    """The driver's main container (``spark-submit``), if it ran."""

    @property
    def succeeded(self) -> bool:
        return self.failure is None and self.driver is not None and self.driver.exit_code == 0

    def role(self, role: PodRole) -> list[PodResult]:
        return [p for p in self.pods.values() if p.role == role]

    def check(self) -> None:
        """Raise :class:`PodFailedError` for the failure, if there was one."""
        if self.failure is not None:
            raise PodFailedError(self.failure)
        if self.driver is None:
            raise PodRunnerError(f"the driver of {self.run_id} did not run")


class LocalSpark:
    """Spark's containers here: ``spark-submit`` in the driver pod, a Worker per executor pod."""

    def __init__(self, cluster: ClusterInfo, state: Path, config: RunnerConfig) -> None:
        self.cluster, self.config, self.image = cluster, config, config.image
        self.driver_properties = state / "driver.properties"
        self.worker_properties = state / "worker.properties"

    def write_worker_properties(self) -> None:
        """``spark-defaults.conf`` (a properties file replaces it) and the cluster's secret."""
        defaults = (self.image.spark_conf / "spark-defaults.conf").read_text()
        write_private(
            self.worker_properties,
            defaults + f"\nspark.authenticate.secret {self.cluster.secret()}\n",
        )

    def submit_options(self) -> list[str]:
        return [
            "--master",
            self.cluster.master_url,
            "--properties-file",
            str(self.driver_properties),
            "--load-spark-defaults",
        ]

    def write_driver_properties(self, app: Application) -> None:
        written = self.cluster.submit_args(self.driver_properties, self.driver_conf(app))
        if written != self.submit_options():  # what the driver's HOST_DATA measured
            raise PodRunnerError("spark-submit's options changed since the pods were measured")

    def driver_conf(self, app: Application) -> dict[str, str]:
        """The application's settings as the operator hands them to Spark, off Kubernetes.

        Without what only Spark on Kubernetes needs: the secret files, ``spark.kubernetes.*``
        and the JVMs' option naming the image's copy of ``log4j2.properties`` (Spark on
        Kubernetes mounts its own configuration over ``/opt/spark/conf``; here every JVM
        loads ``spark-conf/log4j2.properties`` from ``SPARK_CONF_DIR``, the same rules).
        """
        conf = {}
        for key, value in app.spark_conf.items():
            if key in KUBERNETES_ONLY or key.startswith("spark.kubernetes."):
                continue
            if key in JAVA_OPTIONS:
                value = " ".join(t for t in value.split() if t != KUBERNETES_LOGGING)
                if not value:
                    continue
            conf[key] = self.image.rewrite(value)
        conf.update(
            {
                "spark.executor.cores": str(app.executor_cores),
                "spark.executor.memory": app.executor_memory,
                "spark.driver.memory": app.driver_memory,
                "spark.cores.max": str(app.executors * app.executor_cores),
                # Every executor pod takes part: the job waits until all have registered.
                "spark.scheduler.minRegisteredResourcesRatio": "1.0",
                "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
            }
        )
        # The image has the native Parquet path's jar in Spark's jars/; this venv's Spark
        # has not, so the checkout's build goes on the class path (as for `submit`).
        conf.update(native_jar_conf())
        conf.update(self.config.spark_conf)
        return conf

    # --- SparkSide -----------------------------------------------------------------

    def command(self, role: PodRole, volumes: PodVolumes, template: PodTemplate) -> list[str]:
        if role == "driver":
            submit = self.image.path(f"{SPARK_HOME}/bin/spark-submit")
            return [str(submit), *self.submit_options(), str(self.image.path(DRIVER_ENTRY))]
        work = [m for c in template.containers for m in c.mounts if m.path == layout.WORK_DIR]
        if not work:
            raise PodRunnerError(f"the executor pod mounts no {layout.WORK_DIR} for its Worker")
        return worker_command(
            self.cluster.master_url,
            cores=self.config.worker_cores,
            memory=self.config.worker_memory,
            webui_port=0,
            work_dir=volumes.source(work[0].volume),
            properties_file=self.worker_properties,
        )

    def environment(self, role: PodRole) -> dict[str, str]:
        spark = spark_env(self.image.spark_conf)
        env = {k: spark[k] for k in SPARK_KEYS}
        if role == "executor":
            env.update({k: DAEMON_SETTINGS[k] for k in WORKER_KEYS})
        return env

    def files(self, role: PodRole) -> tuple[Path, ...]:
        """Spark's settings (spark-conf/): part of both Spark containers' HOST_DATA."""
        return tuple(sorted(p for p in self.image.spark_conf.iterdir() if p.is_file()))


class PodRunner:
    """Runs rendered runs' pods; a context manager that owns every process it starts.

    Entering starts the standalone master (the driver's and the Workers' commands
    name it, so it exists before any pod is measured); leaving stops every pod still
    running, the master, and removes every pod's volumes, whatever happened.
    """

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self._cluster = StandaloneCluster(
            config.state_dir / "cluster", workers=0, conf_dir=config.image.spark_conf
        )
        self._spark: LocalSpark | None = None
        self._kubelets: list[Kubelet] = []
        self._modules: dict[str, Path] = {}

    def __enter__(self) -> PodRunner:
        info = self._cluster.up()
        try:
            self._spark = LocalSpark(info, self._cluster.state_dir, self.config)
            self._spark.write_worker_properties()
        except BaseException:
            self._cluster.down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._stop_pods()
        finally:
            self._cluster.down()
            self._spark = None

    @property
    def spark(self) -> LocalSpark:
        if self._spark is None:
            raise PodRunnerError("the runner is not started: use it as a context manager")
        return self._spark

    # --- HOST_DATA, before approval ---------------------------------------------------

    def host_data(self, text: str, role: PodRole) -> str:
        """The HOST_DATA (hex) every pod of ``role`` will be launched with, from the YAML.

        The pod is planned as it will be launched but not created: the measurement
        reads no volume (it sees each one at its mount path), only the trusted files.
        """
        template = pod_template(text, role)
        builder = self._builder(run_id_of(text))
        unmade = PodVolumes(self.config.work_root / "pod-unlaunched")  # never created
        return builder.plan(f"{role}-measured", template, unmade).pod.host_data.hex()

    # --- a run ------------------------------------------------------------------------

    def run(self, text: str) -> RunResult:
        """Start the run's pods, wait for the driver, stop everything; never raises for a
        pod's failure (see :attr:`RunResult.failure`), only for a YAML it cannot run."""
        app = application(text)
        self._check(app)
        builder = self._builder(app.run_id)
        result = RunResult(app.run_id)
        started = len(self._kubelets)
        try:
            driver = self._pod(builder, f"{app.run_id}-driver", app.driver)
            driver.start_init()
            executors = []
            for i in range(1, app.executors + 1):
                pod = self._pod(builder, f"{app.run_id}-exec-{i}", app.executor)
                pod.start_init()
                executors.append(pod)
            known = self._worker_ids()
            for pod in executors:
                pod.start_main()
            self._wait_for_workers(executors, known)
            self.spark.write_driver_properties(app)
            driver.start_main()
            result.driver = driver.wait_main(self.config.main_timeout)
            if result.driver.exit_code != 0:
                result.failure = result.driver
        except PodFailedError as exc:
            result.failure = exc.status
        finally:
            ours = self._kubelets[started:]
            for kubelet in reversed(ours):
                kubelet.stop()
            for kubelet in ours:
                result.pods[kubelet.plan.name] = _result_of(kubelet)
                kubelet.plan.volumes.remove()
                self._kubelets.remove(kubelet)
        return result

    def _pod(self, builder: PodBuilder, name: str, template: PodTemplate) -> Kubelet:
        volumes = PodVolumes.create(self.config.work_root, name, template, self.config.secrets)
        try:
            plan = builder.plan(name, template, volumes)
        except BaseException:
            volumes.remove()
            raise
        kubelet = Kubelet(
            plan,
            self.config.state_dir / "pods",
            grace=self.config.grace,
            init_timeout=self.config.init_timeout,
        )
        self._kubelets.append(kubelet)
        return kubelet

    def _builder(self, run_id: str) -> PodBuilder:
        image = self.config.image
        anchors = Anchors(
            control_plane_url=self.config.control_plane_url,
            emulated_tee_dir=self.config.emulated_tee_dir,
            module=self._module(run_id),
            trust_root=image.trust_root,
        )
        return PodBuilder(image, anchors, self.spark, self.config.secrets)

    def _module(self, run_id: str) -> Path:
        """The job module's file as the image would hold it: named by the signed spec.

        Read with the pods' own token and verified against the trust root, as every pod
        does, so the runner starts nothing for a spec the control plane did not sign.
        """
        if run_id not in self._modules:
            token = self.config.secrets.get(self.config.token_secret)
            if token is None:
                raise PodRunnerError(f"no Secret key {'/'.join(self.config.token_secret)}")
            with ControlPlaneClient(self.config.control_plane_url, token) as client:
                verified = verified_run(
                    client, run_id, TrustRoot.load(self.config.image.trust_root)
                )
            self._modules[run_id] = self.config.image.module(verified.spec.module.import_name)
        return self._modules[run_id]

    def _check(self, app: Application) -> None:
        if app.main_file != LOCAL_SCHEME + DRIVER_ENTRY:
            raise PodRunnerError(
                f"mainApplicationFile {app.main_file}: the image's driver entry is "
                f"{LOCAL_SCHEME}{DRIVER_ENTRY}"
            )
        if app.executors < 1:
            raise PodRunnerError("the application asks for no executor")
        if app.executor_cores != self.config.worker_cores:
            raise PodRunnerError(
                f"executors of {app.executor_cores} cores: each executor pod's Worker offers "
                f"{self.config.worker_cores} (one executor per pod)"
            )
        if _mib(app.executor_memory) > _mib(self.config.worker_memory):
            raise PodRunnerError(
                f"executors of {app.executor_memory}: each Worker offers "
                f"{self.config.worker_memory} (render with a smaller --executor-memory)"
            )

    # --- the Workers ------------------------------------------------------------------

    def _worker_ids(self) -> set[str]:
        status = master_status(self.spark.cluster.ports["master-webui"])
        return {str(w.get("id")) for w in status.get("workers", []) if isinstance(w, dict)}

    def _wait_for_workers(self, executors: list[Kubelet], known: set[str]) -> None:
        """Until every executor pod's Worker is ALIVE at the master (new ones only)."""
        deadline = time.monotonic() + self.config.worker_timeout
        while True:
            for pod in executors:
                name = pod.main_name()
                proc = pod.running.get(name)
                if proc is None or proc.returncode is not None:
                    code = None if proc is None else proc.returncode
                    raise PodFailedError(
                        ContainerStatus(
                            pod.plan.name, name, code, "the Worker exited", pod.log(name)
                        )
                    )
            status = master_status(self.spark.cluster.ports["master-webui"])
            fresh = [
                w
                for w in status.get("workers", [])
                if isinstance(w, dict) and str(w.get("id")) not in known
            ]
            if alive_workers({"workers": fresh}) >= len(executors):
                return
            if time.monotonic() > deadline:
                pod = executors[-1]
                raise PodFailedError(
                    ContainerStatus(
                        pod.plan.name,
                        pod.main_name(),
                        None,
                        f"{alive_workers({'workers': fresh})} of {len(executors)} Workers "
                        f"joined the master within {self.config.worker_timeout:.0f} s",
                        pod.log(pod.main_name()),
                    )
                )
            time.sleep(0.25)

    def _stop_pods(self) -> None:
        for kubelet in reversed(self._kubelets):
            try:
                kubelet.stop()
            finally:
                kubelet.plan.volumes.remove()
        self._kubelets.clear()


def run_id_of(text: str) -> str:
    """The run a rendered YAML is for: the SparkApplication's name, or a Pod's label."""
    for doc in documents(text):
        meta = doc.get("metadata")
        if not isinstance(meta, dict):
            continue
        labels = meta.get("labels")
        if isinstance(labels, dict) and isinstance(labels.get(layout.RUN_LABEL), str):
            return str(labels[layout.RUN_LABEL])
    raise PodRunnerError(f"the YAML names no run (label {layout.RUN_LABEL})")


def _result_of(kubelet: Kubelet) -> PodResult:
    plan = kubelet.plan
    return PodResult(
        name=plan.name,
        role=plan.role,
        host_data=kubelet.launched_host_data,
        pod_id=_pod_id(plan.volumes),
        containers=dict(kubelet.statuses),
    )


def _pod_id(volumes: PodVolumes) -> str | None:
    """The pod id the verifier drew, from the bundle it left (informational: unverified)."""
    for bundle in volumes.root.glob(f"v/*/{BUNDLE_NAME}"):
        try:
            receipt: Any = json.loads(bundle.read_text()).get("receipt", {})
            return str(receipt["pod_id"])
        except (OSError, ValueError, KeyError, AttributeError):
            return None
    return None


def _mib(value: str) -> int:
    """A Spark memory size (``512m``, ``2g``) in MiB."""
    m = _MEMORY.fullmatch(value.strip())
    if m is None:
        raise PodRunnerError(f"{value!r} is not a Spark memory size")
    scale = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}[m.group(2).lower()]
    return int(int(m.group(1)) * scale)


__all__ = ["PodResult", "PodRunner", "RunResult", "RunnerConfig", "run_id_of"]
