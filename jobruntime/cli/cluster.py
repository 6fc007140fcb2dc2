"""``jobruntime cluster up|down|status``: a local Spark standalone cluster on 127.0.0.1.

The daemons outlive the command (own sessions, logs under the state directory); the
state directory's ``cluster.json`` is how ``down`` and ``status`` find them again.
Applications must use the cluster's secret: see ``jobruntime.dev.cluster.info``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_json, add_state, command, emit, group
from jobruntime.dev.cluster import ClusterInfo, StandaloneCluster
from jobruntime.dev.cluster.standalone import alive_workers, master_status


def register(sub: Any) -> None:
    cs = group(sub, "cluster", "a local Spark standalone cluster (master + workers)")

    u = command(
        cs,
        "up",
        "start the cluster, or show the one already running",
        [
            "jobruntime cluster up",
            "jobruntime cluster up --workers 3 --cores 2 --memory 2g",
            "jobruntime cluster up --json | jq -r .master_url",
        ],
    )
    _add_state(u)
    u.add_argument("--workers", type=int, default=2, help="number of workers [2]")
    u.add_argument("--cores", type=int, default=1, help="cores per worker [1]")
    u.add_argument("--memory", default="1g", help="memory per worker, e.g. 512m or 1g [1g]")
    u.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for workers")
    u.add_argument("--conf-dir", type=Path, default=None, help="Spark conf dir [spark-conf/]")
    add_json(u, "the cluster's addresses")
    u.set_defaults(handler=up)

    d = command(
        cs,
        "down",
        "stop the workers, their executors and the master",
        ["jobruntime cluster down"],
    )
    _add_state(d)
    add_json(d, "whether a cluster was stopped")
    d.set_defaults(handler=down)

    s = command(
        cs,
        "status",
        "whether the cluster runs, its addresses and its workers (exit 0 either way)",
        ["jobruntime cluster status", "jobruntime cluster status --json"],
    )
    _add_state(s)
    add_json(s, "the cluster's status")
    s.set_defaults(handler=status)


def _add_state(p: argparse.ArgumentParser) -> None:
    add_state(p, "cluster", help="the cluster's state directory")


def _addresses(info: ClusterInfo) -> dict[str, Any]:
    return {
        "master_url": info.master_url,
        "web_ui_url": info.web_ui_url,
        "secret_file": str(info.secret_file),
    }


def up(args: argparse.Namespace) -> int:
    cluster = StandaloneCluster(
        args.state,
        workers=args.workers,
        cores_per_worker=args.cores,
        memory_per_worker=args.memory,
        conf_dir=args.conf_dir,
        start_timeout=args.timeout,
    )
    info = cluster.up()

    def text() -> str:
        lines = [
            f"master: {info.master_url}",
            f"web UI: {info.web_ui_url}",
            f"secret: {info.secret_file} (applications need it as spark.authenticate.secret)",
        ]
        if cluster.cleaned_stale:
            lines.insert(0, "a previous cluster's daemons were gone: its state was cleaned")
        return "\n".join(lines)

    emit(args, {**_addresses(info), "cleaned_stale": cluster.cleaned_stale}, text)
    return 0


def down(args: argparse.Namespace) -> int:
    cluster = StandaloneCluster(args.state)
    running = cluster.state_file.exists()
    cluster.down()
    emit(
        args,
        {"stopped": running},
        "cluster stopped" if running else "no cluster was running",
    )
    return 0


def status(args: argparse.Namespace) -> int:
    """Read-only: never starts, stops or cleans anything."""
    info = StandaloneCluster(args.state).status()
    if info is None:
        emit(args, {"running": False, "state": str(args.state)}, "no cluster is running")
        return 0
    workers = alive_workers(master_status(info.ports.get("master-webui", 0)))
    emit(
        args,
        {"running": True, "state": str(args.state), **_addresses(info), "workers_alive": workers},
        f"master: {info.master_url}\nweb UI: {info.web_ui_url}\n"
        f"workers: {workers} ALIVE of {len(info.pids) - 1}",
    )
    return 0
