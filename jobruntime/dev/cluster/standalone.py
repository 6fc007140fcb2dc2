"""A local Spark standalone cluster (one Master, N Workers) on 127.0.0.1.

Why a standalone cluster and not ``local[N]``: executors are then separate JVMs
started by Workers, as on a real cluster, so authenticated and encrypted RPC between
driver and executors, shuffle between executors and Python workers inside executors
are all exercised. Everything binds to loopback; the secret every daemon and
application must share is generated per cluster (see :mod:`jobruntime.dev.cluster.info`).

State directory layout: ``cluster.json`` (0600, the :class:`ClusterInfo`),
``secret`` (0600), ``logs/<role>.log``, ``work/<i>/`` (each Worker's executors).

``workers=0`` starts the master alone, for workers that are started elsewhere with
an environment of their own: the development pod runner (``jobruntime.dev``) starts
one per executor pod, each carrying that pod's key-agent socket, with
:func:`worker_command` and the cluster's secret in a properties file.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobruntime.dev import procs
from jobruntime.dev.cluster.errors import ClusterConfigError, ClusterStartError
from jobruntime.dev.cluster.info import ClusterInfo, write_private
from jobruntime.dev.process import ManagedProcess
from jobruntime.sparkconf.spark_home import LOOPBACK, spark_bin, spark_env

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# The daemons only coordinate: a small heap and no optimising JIT start them faster on
# small machines and leave the CPUs to executors.
DAEMON_JAVA_OPTS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
# Authentication does not depend on spark-conf/ being found. The REST submission
# server (port 6066, on by default) takes no credentials: any local user could run
# code through it, so it is off.
MASTER_OPTS = "-Dspark.authenticate=true -Dspark.master.rest.enabled=false"
WORKER_OPTS = "-Dspark.authenticate=true"
_MEMORY = re.compile(r"[1-9][0-9]*[mMgG]")


DAEMON_SETTINGS = {
    "SPARK_DAEMON_JAVA_OPTS": DAEMON_JAVA_OPTS,
    "SPARK_DAEMON_MEMORY": "512m",
    "SPARK_MASTER_OPTS": MASTER_OPTS,
    "SPARK_WORKER_OPTS": WORKER_OPTS,
}
"""The daemons' own variables (no secret): small daemons, authentication on."""


def daemon_env(secret: str, conf_dir: Path | None = None) -> dict[str, str]:
    """The master's and workers' environment: the secret where their SecurityManager
    reads it (never argv), small daemons, authentication on."""
    env = spark_env(conf_dir)
    env.update(DAEMON_SETTINGS, _SPARK_AUTH_SECRET=secret)
    return env


class StandaloneCluster:
    """Start, find and stop the cluster whose state lives in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        workers: int = 2,
        cores_per_worker: int = 1,
        memory_per_worker: str = "1g",
        conf_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if not 0 <= workers <= 32:
            raise ClusterConfigError(f"workers must be 0 to 32, not {workers}")
        if not 1 <= cores_per_worker <= 256:
            raise ClusterConfigError(f"cores per worker must be 1 to 256, not {cores_per_worker}")
        if not _MEMORY.fullmatch(memory_per_worker):
            raise ClusterConfigError(
                f"worker memory must look like 512m or 1g, not {memory_per_worker!r}"
            )
        self.state_dir = state_dir.resolve()
        self.workers = workers
        self.cores_per_worker = cores_per_worker
        self.memory_per_worker = memory_per_worker
        self.conf_dir = conf_dir
        self.start_timeout = start_timeout
        self.cleaned_stale = False
        self._procs: dict[str, ManagedProcess] = {}

    @property
    def state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def secret_file(self) -> Path:
        return self.state_dir / "secret"

    def log_file(self, role: str) -> Path:
        return self.state_dir / "logs" / f"{role}.log"

    def status(self) -> ClusterInfo | None:
        """The running cluster, or None if there is none or any daemon of it is gone."""
        info = ClusterInfo.load(self.state_file)
        return info if info is not None and self._all_alive(info) else None

    def up(self) -> ClusterInfo:
        """The running cluster; started here if none runs (stale state is cleaned first)."""
        with self._locked():
            info = ClusterInfo.load(self.state_file)
            if info is not None:
                if self._all_alive(info):
                    return info
                self._stop(info)
                self.cleaned_stale = True
            self._clear()
            return self._start()

    def down(self) -> None:
        """Stop workers (and their executors), then the master; no-op when none runs."""
        if not self.state_dir.is_dir():
            return
        with self._locked():
            info = ClusterInfo.load(self.state_file)
            if info is not None:
                self._stop(info)
            self._clear()

    # --- starting ------------------------------------------------------------------

    def _start(self) -> ClusterInfo:
        secret = secrets.token_hex(32)
        write_private(self.secret_file, secret + "\n")
        ports = {"master": procs.free_port(), "master-webui": procs.free_port()}
        ports.update({f"worker-{i}-webui": procs.free_port() for i in range(self.workers)})
        info = ClusterInfo(
            master_url=f"spark://{LOOPBACK}:{ports['master']}",
            web_ui_url=f"http://{LOOPBACK}:{ports['master-webui']}",
            pids={},
            secret_file=self.secret_file,
            ports=ports,
        )
        env = daemon_env(secret, self.conf_dir)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        deadline = time.monotonic() + self.start_timeout
        try:
            self._spawn("master", self._master_cmd(info), env, info)
            self._wait(info, 0, deadline)
            for i in range(self.workers):
                (self.state_dir / "work" / str(i)).mkdir(parents=True, exist_ok=True)
                self._spawn(f"worker-{i}", self._worker_cmd(info, i), env, info)
            self._wait(info, self.workers, deadline)
        except BaseException:
            self._stop(info)
            self._clear()
            raise
        return info

    def _master_cmd(self, info: ClusterInfo) -> list[str]:
        return [
            str(spark_bin("spark-class")),
            MASTER_CLASS,
            "--host",
            LOOPBACK,
            "--port",
            str(info.ports["master"]),
            "--webui-port",
            str(info.ports["master-webui"]),
        ]

    def _worker_cmd(self, info: ClusterInfo, i: int) -> list[str]:
        return worker_command(
            info.master_url,
            cores=self.cores_per_worker,
            memory=self.memory_per_worker,
            webui_port=info.ports[f"worker-{i}-webui"],
            work_dir=self.state_dir / "work" / str(i),
        )

    def _spawn(self, role: str, cmd: list[str], env: dict[str, str], info: ClusterInfo) -> None:
        """Start one daemon and record its pid at once, so a crash here leaves no orphan."""
        proc = ManagedProcess(role, cmd, self.log_file(role), env=env, cwd=self.state_dir)
        self._procs[role] = proc.start()
        info.pids[role] = proc.pid
        info.save(self.state_file)

    def _wait(self, info: ClusterInfo, workers: int, deadline: float) -> None:
        """Until the master is ALIVE with ``workers`` ALIVE workers; typed error otherwise."""
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for role, proc in self._procs.items():
                if proc.returncode is not None:
                    raise ClusterStartError(
                        f"spark {role} exited with code {proc.returncode}: {proc.tail()}"
                    )
            status = master_status(info.ports["master-webui"])
            if status.get("status") == "ALIVE" and alive_workers(status) >= workers:
                return
            time.sleep(0.25)
        tails = " ;; ".join(procs.log_tail(self.log_file(r), 6) for r in self._procs)
        raise ClusterStartError(
            f"after {self.start_timeout:.0f} s the master is {status.get('status', 'unreachable')}"
            f" with {alive_workers(status)} of {workers} workers ALIVE: {tails}"
        )

    # --- stopping ------------------------------------------------------------------

    def _all_alive(self, info: ClusterInfo) -> bool:
        roles = ["master", *(f"worker-{i}" for i in range(len(info.pids) - 1))]
        return sorted(roles) == sorted(info.pids) and all(
            procs.is_ours(pid, self._marker(role, info)) for role, pid in info.pids.items()
        )

    def _marker(self, role: str, info: ClusterInfo) -> str:
        """An argument only this daemon of this cluster has, against pid reuse."""
        if role == "master":
            return str(info.ports.get("master", ""))
        return str(self.state_dir / "work" / role.removeprefix("worker-"))

    def _stop(self, info: ClusterInfo) -> None:
        def ours(role: str, pid: int) -> bool:
            return procs.is_ours(pid, self._marker(role, info)) or (
                procs.cmdline(pid) is None and procs.spark_group(pid)
            )

        workers = [pid for role, pid in info.pids.items() if role != "master" and ours(role, pid)]
        procs.stop_groups(workers)
        master = info.pids.get("master")
        if master is not None and ours("master", master):
            procs.stop_groups([master])
        for proc in self._procs.values():
            proc.wait(1)
        self._procs.clear()

    def _clear(self) -> None:
        self.state_file.unlink(missing_ok=True)
        self.secret_file.unlink(missing_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up``/``down`` at a time per state directory, across processes."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.state_dir / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def worker_command(
    master_url: str,
    *,
    cores: int,
    memory: str,
    webui_port: int,
    work_dir: Path,
    properties_file: Path | None = None,
) -> list[str]:
    """One Worker of ``master_url``; ``webui_port`` 0 lets the kernel choose.

    ``properties_file`` replaces ``spark-defaults.conf`` for this daemon (Spark reads
    one or the other): give it that file's settings plus ``spark.authenticate.secret``
    to keep the secret out of the Worker's environment.
    """
    if not _MEMORY.fullmatch(memory):
        raise ClusterConfigError(f"worker memory must look like 512m or 1g, not {memory!r}")
    cmd = [
        str(spark_bin("spark-class")),
        WORKER_CLASS,
        master_url,
        "--host",
        LOOPBACK,
        "--cores",
        str(cores),
        "--memory",
        memory,
        "--webui-port",
        str(webui_port),
        "--work-dir",
        str(work_dir),
    ]
    if properties_file is not None:
        cmd += ["--properties-file", str(properties_file)]
    return cmd


def master_status(webui_port: int) -> dict[str, Any]:
    """The master web UI's ``/json/``, or ``{}`` while it is not answering yet."""
    conn = http.client.HTTPConnection(LOOPBACK, webui_port, timeout=2)
    try:
        conn.request("GET", "/json/")
        resp = conn.getresponse()
        body = resp.read()
        data = json.loads(body) if resp.status == 200 else {}
    except (OSError, http.client.HTTPException, ValueError):
        return {}
    finally:
        conn.close()
    return data if isinstance(data, dict) else {}


def alive_workers(status: dict[str, Any]) -> int:
    workers = status.get("workers", [])
    if not isinstance(workers, list):
        return 0
    return sum(1 for w in workers if isinstance(w, dict) and w.get("state") == "ALIVE")
