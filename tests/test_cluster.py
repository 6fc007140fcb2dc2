"""A real local standalone cluster: start it, run a PySpark job on it, stop it.

One cluster for the module (about 10-15 s to start); the job is a real ``spark-submit``
with ``spark-conf/`` in force (authenticated, encrypted RPC), so it also proves that
the per-cluster secret reaches master, workers, driver and executors.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from jobruntime.cli import cluster as cluster_cli
from jobruntime.dev.cluster import (
    ClusterConfigError,
    ClusterInfo,
    SparkHomeError,
    StandaloneCluster,
    spark_bin,
    spark_env,
)
from jobruntime.dev.cluster.standalone import (
    alive_workers,
    daemon_env,
    master_status,
)
from jobruntime.dev.process import ManagedProcess
from jobruntime.dev.procs import cmdline, free_port, group_members

pytestmark = pytest.mark.slow

N = 100_000
JOB = textwrap.dedent(
    """
    import json, os
    import pyarrow as pa, pyarrow.compute as pc
    from pyspark.sql import SparkSession, functions as F

    def executor():
        # Walk up from this Python worker to the executor JVM that started it.
        pid = os.getpid()
        while pid > 1:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
            if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in args:
                ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
                return f"{pid}:{ppid}"
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        return "none"

    def squares(batches):
        who = executor()
        for b in batches:
            ids = b.column("id")
            yield pa.RecordBatch.from_arrays(
                [pc.multiply(ids, ids), pa.array([who] * len(ids))], ["sq", "executor"]
            )

    spark = SparkSession.builder.appName("cluster-test").getOrCreate()
    df = spark.range(0, __N__, numPartitions=4).mapInArrow(squares, "sq long, executor string")
    rows = df.groupBy("executor").agg(F.sum("sq").alias("s"), F.count("*").alias("n")).collect()
    print("RESULT " + json.dumps({r["executor"]: [r["s"], r["n"]] for r in rows}))
    spark.stop()
    """
).replace("__N__", str(N))
# Deterministic spread over both executors: wait until both have registered.
JOB_CONF = {
    "spark.cores.max": "2",
    "spark.scheduler.minRegisteredResourcesRatio": "1.0",
    "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
    "spark.executor.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
    "spark.sql.shuffle.partitions": "2",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    state = tmp_path_factory.mktemp("cluster")
    # A previous cluster that died without `down`: up() must clean it, not trust it.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = ClusterInfo("spark://127.0.0.1:1", "http://127.0.0.1:1", {"master": dead.pid}, state)
    stale.save(state / "cluster.json")
    c = StandaloneCluster(state, workers=2)
    try:
        c.up()
        yield c
    finally:
        c.down()


def all_pids(info: ClusterInfo) -> list[int]:
    """The daemons and everything in their process groups (executors, Python workers)."""
    return sorted({p for g in info.pids.values() for p in [g, *group_members(g)]})


def mentioning(text: str) -> list[int]:
    """Live processes with ``text`` in their arguments (whatever group they are in)."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [p for p in pids if p != os.getpid() and any(text in a for a in cmdline(p) or [])]


def wrong_secret(info: ClusterInfo) -> str:
    """A secret of the right shape that is not the cluster's."""
    wrong = secrets.token_hex(32)
    assert wrong != info.secret()
    return wrong


# A driver that says where it got: the script ran, and a job ran on the cluster.
PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    out = Path(sys.argv[1])
    (out / "started").write_text("started")
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(sys.argv[2]).getOrCreate()
    n = spark.range(0, 10, numPartitions=2).count()
    (out / "ran").write_text(str(n))
    spark.stop()
    """
)


@contextmanager
def extra_worker(info: ClusterInfo, where: Path, secret: str) -> Iterator[tuple[int, str, Path]]:
    """One more Worker for ``info``'s master, holding ``secret``; all its files in ``where``.

    The command is the cluster's own (``StandaloneCluster._worker_cmd``), the environment
    the one ``StandaloneCluster._start`` gives its daemons, with this secret. Yields the
    worker's pid (its own process group), its web UI address (how the master lists it)
    and its log; on exit the whole group is stopped and must be gone.
    """
    webui = free_port()
    ours = StandaloneCluster(where, workers=1)
    cmd = ours._worker_cmd(replace(info, ports={**info.ports, "worker-0-webui": webui}), 0)
    assert str(ours.state_dir / "work" / "0") in cmd
    (ours.state_dir / "work" / "0").mkdir(parents=True)
    env = daemon_env(secret)
    log = ours.state_dir / "worker.log"
    proc = ManagedProcess("extra-worker", cmd, log, env=env, cwd=ours.state_dir).start()
    try:
        assert not any(secret in a for a in cmd)
        yield proc.pid, f"http://127.0.0.1:{webui}", log
    finally:
        proc.stop()
    assert group_members(proc.pid) == []
    assert mentioning(str(ours.state_dir)) == []


def test_up_starts_two_alive_workers_with_a_private_secret(cluster: StandaloneCluster) -> None:
    info = cluster.status()
    assert info is not None
    assert cluster.cleaned_stale
    status = master_status(info.ports["master-webui"])
    assert status["status"] == "ALIVE"
    assert [w["state"] for w in status["workers"]] == ["ALIVE", "ALIVE"]
    assert info.master_url == status["url"]
    assert json.loads(cluster.state_file.read_text())["pids"] == info.pids
    assert cluster.secret_file.stat().st_mode & 0o777 == 0o600
    secret = info.secret()
    assert len(secret) == 64
    for pid in info.pids.values():
        assert not any(secret in a for a in cmdline(pid) or [])
    assert sorted(info.pids) == ["master", "worker-0", "worker-1"]


def test_up_again_returns_the_running_cluster(cluster: StandaloneCluster) -> None:
    before = cluster.status()
    started = time.monotonic()
    again = StandaloneCluster(cluster.state_dir).up()
    assert again == before
    assert time.monotonic() - started < 2


def test_cli_up_shows_the_running_cluster(
    cluster: StandaloneCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    p = argparse.ArgumentParser()
    cluster_cli.register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["cluster", "up", "--state", str(cluster.state_dir)])
    assert args.handler(args) == 0
    info = cluster.status()
    assert info is not None
    out = capsys.readouterr().out
    assert f"master: {info.master_url}" in out
    assert f"web UI: {info.web_ui_url}" in out


def test_spark_submit_runs_python_on_both_workers_executors(
    cluster: StandaloneCluster, tmp_path: Path
) -> None:
    info = cluster.status()
    assert info is not None
    script = tmp_path / "job.py"
    script.write_text(JOB)
    args = info.submit_args(tmp_path / "submit.properties", JOB_CONF)
    assert (tmp_path / "submit.properties").stat().st_mode & 0o777 == 0o600
    assert not any(info.secret() in a for a in args)
    started = time.monotonic()
    done = subprocess.run(
        [str(spark_bin("spark-submit")), *args, str(script)],
        env=spark_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    by_executor = {k: tuple(v) for k, v in json.loads(line.removeprefix("RESULT ")).items()}
    assert sum(s for s, _ in by_executor.values()) == (N - 1) * N * (2 * N - 1) // 6
    assert sum(n for _, n in by_executor.values()) == N
    # Two executor JVMs, each started by a different one of our workers.
    executors = {int(k.split(":")[0]): int(k.split(":")[1]) for k in by_executor}
    assert len(executors) == 2, by_executor
    assert sorted(executors.values()) == sorted(
        pid for role, pid in info.pids.items() if role.startswith("worker-")
    )
    assert "authentication enabled" in done.stderr
    secret = info.secret()
    assert secret not in done.stdout + done.stderr
    for log in [*cluster.state_dir.glob("logs/*"), *cluster.state_dir.glob("work/*/*/*/*")]:
        assert secret not in log.read_text(errors="replace"), log
    print(f"spark-submit took {took:.1f} s")


def test_a_driver_with_a_wrong_secret_cannot_register(
    cluster: StandaloneCluster, tmp_path: Path
) -> None:
    """Everything as in the spark-submit test above but the secret: the app never runs.

    The master refuses the driver's first registration (authentication); the test stops
    there. (Spark's standalone client would try twice more with the same secret, 20 s
    apart, fixed in StandaloneAppClient, then give up: a minute more of the same.)
    """
    info = cluster.status()
    assert info is not None
    wrong = wrong_secret(info)
    name = f"wrong-secret-{secrets.token_hex(4)}"
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    props = tmp_path / "submit.properties"
    args = info.submit_args(props, {**JOB_CONF, "spark.authenticate.secret": wrong})
    assert props.stat().st_mode & 0o777 == 0o600
    assert f"spark.authenticate.secret={wrong}\n" in props.read_text()
    cmd = [str(spark_bin("spark-submit")), *args, str(script), str(tmp_path), name]
    assert not any(wrong in a or info.secret() in a for a in cmd)
    started = time.monotonic()
    log = tmp_path / "driver.log"
    proc = ManagedProcess("driver", cmd, log, env=spark_env(), cwd=tmp_path)
    refused = f"Failed to connect to master {info.master_url.removeprefix('spark://')}"
    try:
        proc.start().wait_ready(lambda: refused in log.read_text(), 120, "refused registration")
    finally:
        proc.stop()
    took = time.monotonic() - started
    out = log.read_text()
    assert group_members(proc.pid) == []
    assert (tmp_path / "started").read_text() == "started"
    assert not (tmp_path / "ran").exists()
    assert "authentication enabled" in out
    assert refused in out, out[-3000:]
    assert wrong not in out
    status = master_status(info.ports["master-webui"])
    assert status["status"] == "ALIVE"
    apps = [a["name"] for a in status["activeapps"] + status["completedapps"]]
    assert name not in apps, apps
    print(f"wrong-secret driver refused after {took:.1f} s")


def test_a_worker_with_a_wrong_secret_cannot_join(
    cluster: StandaloneCluster, tmp_path: Path
) -> None:
    """Watched until it has been refused twice (Workers retry every 5-15 s at first)."""
    info = cluster.status()
    assert info is not None
    wrong = wrong_secret(info)
    master = info.master_url.removeprefix("spark://")
    with extra_worker(info, tmp_path, wrong) as (pid, webui, log):
        deadline = time.monotonic() + 90
        refused = 0
        while refused < 2:
            status = master_status(info.ports["master-webui"])
            if status:  # {} when the master's UI is slow to answer: look again
                assert alive_workers(status) == 2
                assert webui not in [w["webuiaddress"] for w in status["workers"]]
            text = log.read_text(errors="replace")
            refused = text.count(f"Failed to connect to master {master}")
            assert cmdline(pid) is not None, text[-3000:]
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.5)
    assert wrong not in log.read_text(errors="replace")
    status = master_status(info.ports["master-webui"])
    assert alive_workers(status) == 2
    assert webui not in [w["webuiaddress"] for w in status["workers"]]
    assert cluster.status() == info


def test_a_worker_with_the_right_secret_joins(cluster: StandaloneCluster, tmp_path: Path) -> None:
    """The control for the test above: the same extra worker, with the cluster's secret."""
    info = cluster.status()
    assert info is not None
    with extra_worker(info, tmp_path, info.secret()) as (pid, webui, log):
        deadline = time.monotonic() + 60
        while True:
            status = master_status(info.ports["master-webui"])
            states = {w["webuiaddress"]: w["state"] for w in status.get("workers", [])}
            if states.get(webui) == "ALIVE":
                break
            assert cmdline(pid) is not None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.25)
        assert alive_workers(status) == 3
    # Stopped: the master drops it, the cluster's own two workers stay.
    deadline = time.monotonic() + 30
    while alive_workers(status := master_status(info.ports["master-webui"])) != 2:
        assert time.monotonic() < deadline, status
        time.sleep(0.25)
    assert cluster.status() == info


def test_down_leaves_no_process_behind(cluster: StandaloneCluster) -> None:
    info = cluster.status()
    assert info is not None
    pids = all_pids(info)
    assert len(pids) >= 3
    cluster.down()
    assert [p for p in pids if cmdline(p) is not None] == []
    assert [g for g in info.pids.values() if group_members(g)] == []
    assert not cluster.state_file.exists()
    assert not cluster.secret_file.exists()
    assert cluster.status() is None
    cluster.down()  # idempotent


def test_bad_settings_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError) as bad:
        StandaloneCluster(tmp_path, memory_per_worker="lots")
    assert bad.value.exit_code == 27
    assert bad.value.code == "cluster.config"
    with pytest.raises(SparkHomeError):
        spark_env(tmp_path)


def test_spark_env_points_every_process_at_our_interpreter_and_loopback() -> None:
    env = spark_env()
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert (Path(env["SPARK_HOME"]) / "jars").is_dir()
    assert (Path(env["SPARK_CONF_DIR"]) / "spark-defaults.conf").is_file()
    assert (Path(env["JAVA_HOME"]) / "bin" / "java").is_file()
