"""``jobruntime submit``: run a job module locally, verified, attested and encrypted."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from jobruntime.cli.common import add_json, add_state, command, emit
from jobruntime.dev.submit import SubmitPlan, driver_reason, submit
from jobruntime.errors import ConfigError
from jobruntime.job.errors import JobCancelledError
from jobruntime.job.params import parse_value, read_params_file
from jobruntime.storage.uri import canonical_uri

console = Console(stderr=True, highlight=False)
CANCELLED_EXIT = JobCancelledError.exit_code


def register(sub: Any) -> None:
    p = command(
        sub,
        "submit",
        "run a job module on Spark against the local emulator",
        [
            "jobruntime submit jobs/overlap.py --input customers_a=./data/a "
            "--input customers_b=./data/b --output overlap=./data/overlap --param k=10",
            "jobruntime submit jobs/redaction.py --input src=./data/a --output out=./data/red "
            "--param 'pii_columns=[\"email\"]' --no-auto-approve",
            "jobruntime submit jobs/overlap.py --params-file params.json "
            '--master "$(jobruntime cluster up --json | jq -r .master_url)" ... --json',
        ],
    )
    p.add_argument("module", type=Path, help="the job module, e.g. jobs/overlap.py")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=URI",
        help="a dataset the job reads as NAME: a path (made absolute), file:// or az:// (repeat)",
    )
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="NAME=URI",
        help="a dataset the job writes as NAME, encrypted: a path, file:// or az:// (repeat)",
    )
    p.add_argument(
        "--output-key",
        action="append",
        default=[],
        metavar="NAME=ORG/KEY",
        help="the output's master key (default ORG-OF-FIRST-INPUT/NAME)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a job parameter, checked against the module's Params before anything is "
        'submitted; VALUE is read as JSON if it parses (10, true, \'["a","b"]\'), else '
        "as text; overrides --params-file",
    )
    p.add_argument(
        "--params-file",
        type=Path,
        metavar="FILE",
        help="a JSON object of job parameters (NAME: VALUE)",
    )
    p.add_argument(
        "--master",
        default="local[2]",
        help="local[2] (default) or spark://HOST:PORT from `jobruntime cluster up`",
    )
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark configuration"
    )
    add_state(
        p,
        "emulator",
        "--emulator-state",
        help="the local emulator's state (started if none serves it)",
    )
    add_state(
        p, "cluster", "--cluster-state", help="where `jobruntime cluster up` keeps the cluster"
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=10.0,
        help="seconds between the heartbeat sidecar's reports",
    )
    p.add_argument(
        "--no-auto-approve",
        action="store_true",
        help="wait for `jobruntime approve` instead of the emulator's dev owner keys",
    )
    add_json(p, "the run id, exit code, outputs, their keys and the timings")
    p.set_defaults(handler=run)


def pairs(values: list[str], what: str) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise ConfigError(f"{what} takes NAME=VALUE, not {value!r}")
        found[name] = rest
    return found


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    """``--params-file`` then ``--param`` (later wins); see ``jobruntime.job.params``."""
    found = read_params_file(args.params_file) if args.params_file else {}
    found.update({k: parse_value(v) for k, v in pairs(args.param, "--param").items()})
    return found


def run(args: argparse.Namespace) -> int:
    plan = SubmitPlan(
        module=args.module,
        # Relative paths are resolved here, once: the spec holds canonical URIs only.
        inputs={n: canonical_uri(u) for n, u in pairs(args.input, "--input").items()},
        outputs={n: canonical_uri(u) for n, u in pairs(args.output, "--output").items()},
        params=parameters(args),
        state=args.emulator_state,
        master=args.master,
        output_keys=pairs(args.output_key, "--output-key"),
        auto_approve=not args.no_auto_approve,
        spark_conf=pairs(args.conf, "--conf"),
        cluster_state=args.cluster_state,
        heartbeat_interval=args.heartbeat_interval,
    )
    with console.status("starting") as status:

        def report(line: str) -> None:
            status.update(line)
            console.log(line)

        try:
            result = submit(plan, report, progress=status.update)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]: the run was cancelled")
            return 130
    if args.json:  # on failure too: a script reads the run id and the exit code
        emit(
            args,
            {
                "run_id": result.run_id,
                "exit_code": result.exit_code,
                "outputs": result.outputs,
                "output_keys": result.output_keys,
                "timings": [{"step": t, "seconds": round(s, 3)} for t, s in result.timings],
                "driver_log": str(result.driver_log) if result.driver_log else None,
            },
        )
    for title, seconds in result.timings:
        console.print(f"  {seconds:6.1f} s  {title}")
    if result.exit_code == CANCELLED_EXIT:
        console.print(f"[yellow]run {result.run_id} cancelled[/yellow]")
        return result.exit_code
    if result.exit_code != 0:
        reason = driver_reason(result.driver_log) if result.driver_log else ""
        console.print(f"[red]run {result.run_id} failed[/red] (exit {result.exit_code}): {reason}")
        console.print(f"driver log: {result.driver_log}")
        return result.exit_code
    if args.json:
        return 0
    for name, uri in result.outputs.items():
        print(f"{result.run_id}: {name} written encrypted to {uri}")
        print(
            f"  decrypt as its owner: jobruntime dataset decrypt {uri} --to {name}.csv "
            f"--key {result.output_keys[name]} --emulator-state {args.emulator_state}"
        )
    return 0
