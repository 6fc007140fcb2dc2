"""``jobruntime cluster up|down``: a local Spark standalone cluster on 127.0.0.1.

The daemons outlive the command (own sessions, logs under the state directory); the
state directory's ``cluster.json`` is how ``down`` finds them again. Applications must
use the cluster's secret: see ``jobruntime.cluster.info``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobruntime.cluster import StandaloneCluster

DEFAULT_STATE = Path(".state/cluster")


def register(sub: Any) -> None:
    p = sub.add_parser("cluster", help="a local Spark standalone cluster (master + workers)")
    cs = p.add_subparsers(dest="cluster_command", required=True)

    u = cs.add_parser("up", help="start the cluster, or show the one already running")
    _add_state(u)
    u.add_argument("--workers", type=int, default=2, help="number of workers [2]")
    u.add_argument("--cores", type=int, default=1, help="cores per worker [1]")
    u.add_argument("--memory", default="1g", help="memory per worker, e.g. 512m or 1g [1g]")
    u.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for workers")
    u.add_argument("--conf-dir", type=Path, default=None, help="Spark conf dir [spark-conf/]")
    u.set_defaults(handler=up)

    d = cs.add_parser("down", help="stop the workers, their executors and the master")
    _add_state(d)
    d.set_defaults(handler=down)


def _add_state(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state", type=Path, default=DEFAULT_STATE, help=f"state directory [{DEFAULT_STATE}]"
    )


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
    if cluster.cleaned_stale:
        print("a previous cluster's daemons were gone: its state was cleaned")
    print(f"master: {info.master_url}")
    print(f"web UI: {info.web_ui_url}")
    print(f"secret: {info.secret_file} (applications need it as spark.authenticate.secret)")
    return 0


def down(args: argparse.Namespace) -> int:
    cluster = StandaloneCluster(args.state)
    running = cluster.state_file.exists()
    cluster.down()
    print("cluster stopped" if running else "no cluster was running")
    return 0
