"""Entry point of ``jobruntime``: builds the command tree and turns errors into exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from jobruntime.cli import (
    audit,
    cluster,
    conf,
    dataset,
    emulator,
    keys,
    kms,
    manifest,
    runs,
    spec,
    submit,
)
from jobruntime.entrypoint import run_main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobruntime", description="Confidential Spark job runtime: keys, specs, runs."
    )
    sub = p.add_subparsers(dest="command", required=True)
    commands = (keys, spec, emulator, runs, kms, dataset, submit, cluster, audit, conf, manifest)
    for module in commands:
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_main("jobruntime", lambda: int(args.handler(args)))
