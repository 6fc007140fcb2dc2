"""Entry point of ``jobruntime``: builds the command tree and turns errors into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jobruntime.cli import audit, cluster, dataset, emulator, keys, kms, runs, spec, submit
from jobruntime.errors import JobRuntimeError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobruntime", description="Confidential Spark job runtime: keys, specs, runs."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for module in (keys, spec, emulator, runs, kms, dataset, submit, cluster, audit):
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except JobRuntimeError as exc:
        print(f"jobruntime: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"jobruntime: internal: unexpected {type(exc).__name__}", file=sys.stderr)
        if os.environ.get("JOBRUNTIME_DEBUG"):
            raise
        return 70
    return result
