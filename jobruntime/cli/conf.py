"""``jobruntime conf check``: refuse a Spark configuration that weakens spark-conf/.

Reads what ``spark-submit`` would run with (a conf directory's ``spark-defaults.conf``,
optionally a ``--properties-file`` on top, as with ``--load-spark-defaults``, then
``--conf`` and ``--master``), applies ``SECURE_SPARK_CONF`` and prints every refusal, one
line each in the form every command fails with (``jobruntime: <code>: <message>``), on
stderr. It exits 0 when there is none, else with the first refusal's exit code (31 for
every ``sparkconf.*`` code). A file that cannot be read is ``config.invalid`` (exit 2).
With ``--json`` the outcome, refusals included, is also one JSON document on stdout; the
exit code is the same.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_json, command, emit, group
from jobruntime.errors import ConfigError
from jobruntime.sparkconf.check import LOCAL_IP_ENV, SECURE_SPARK_CONF, check_conf_dir
from jobruntime.sparkconf.spark_home import default_conf_dir


def register(sub: Any) -> None:
    cs = group(sub, "conf", "Spark configuration: check what spark-conf/ guarantees")
    c = command(
        cs,
        "check",
        "refuse an effective Spark configuration that weakens spark-conf/",
        [
            "jobruntime conf check",
            "jobruntime conf check --properties-file spark-conf/kubernetes.conf "
            "--master k8s://https://aks.example:443",
            "jobruntime conf check --conf spark.ui.enabled=true --json",
        ],
        description="Print every weakening, one line each on stderr; exit with the first "
        "one's code (0 when there is none).",
    )
    c.add_argument(
        "--conf-dir",
        type=Path,
        default=None,
        help="holds spark-defaults.conf [$SPARK_CONF_DIR, else the checkout's spark-conf/]",
    )
    c.add_argument(
        "--properties-file",
        type=Path,
        default=None,
        help="on top of spark-defaults.conf, as spark-submit --properties-file FILE "
        "--load-spark-defaults (on Kubernetes: spark-conf/kubernetes.conf)",
    )
    c.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a setting on top"
    )
    c.add_argument(
        "--master", default=None, help="master URL (k8s://... adds the Kubernetes checks)"
    )
    c.add_argument(
        "--spark-local-ip",
        default=None,
        metavar="IP",
        help=f"the driver's ${LOCAL_IP_ENV}, where Spark binds the UI; checked only when given "
        "(or on Kubernetes by spark.kubernetes.driverEnv; the driver always checks its own)",
    )
    add_json(c, "the checks' outcome (every refusal with its code)")
    c.set_defaults(handler=check)


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # Never echo the item: it may be a secret given without its key.
            raise ConfigError("--conf takes KEY=VALUE")
        found[key.strip()] = value
    if args.master is not None:
        found["spark.master"] = args.master
    return found


def check(args: argparse.Namespace) -> int:
    # In the image Spark's configuration is $SPARK_CONF_DIR; in a checkout, spark-conf/.
    env_dir = os.environ.get("SPARK_CONF_DIR")
    conf_dir = args.conf_dir or (Path(env_dir) if env_dir else default_conf_dir())
    env = None if args.spark_local_ip is None else {LOCAL_IP_ENV: args.spark_local_ip}
    refusals = check_conf_dir(conf_dir, args.properties_file, _overrides(args), env)
    for refusal in refusals:
        print(f"jobruntime: {refusal.one_line()}", file=sys.stderr)
    checks = len(SECURE_SPARK_CONF.checks)
    if refusals and not args.json:
        return refusals[0].exit_code
    emit(
        args,
        {
            "conf_dir": str(conf_dir),
            "checks": checks,
            "ok": not refusals,
            "refusals": [
                {"code": r.code, "exit_code": r.exit_code, "message": r.message} for r in refusals
            ],
        },
        f"{conf_dir}: the {checks} Spark configuration checks pass",
    )
    return refusals[0].exit_code if refusals else 0
