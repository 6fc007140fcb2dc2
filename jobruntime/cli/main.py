"""Entry point of ``jobruntime``: builds the command tree and turns errors into exit codes.

The command modules import heavy things at import time (pydantic models, pyarrow,
cryptography, rich...), so only the module of the command being run is imported:
``jobruntime --help`` and ``--version`` import none, and the top-level listing comes
from :data:`COMMANDS` (``tests/test_cli_fast.py`` keeps it equal to what the modules
register).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from jobruntime.entrypoint import run_main

DISTRIBUTION = "confidential-spark-runtime"

COMMANDS: dict[str, tuple[str, str]] = {
    "keys": ("keys", "generate signing keys and show key ids"),
    "spec": ("spec", "sign and verify job-run specs"),
    "emulator": ("emulator", "the local control-plane emulator"),
    "runs": ("runs", "submit, inspect and cancel job runs"),
    "approve": ("runs", "approve a run as a data owner (signs its spec digest)"),
    "kms": ("kms", "dataset master keys in the control plane's KMS"),
    "dataset": ("dataset", "encrypt, decrypt and inspect encrypted datasets"),
    "submit": ("submit", "run a job module on Spark against the local emulator"),
    "cluster": ("cluster", "a local Spark standalone cluster (master + workers)"),
    "audit": ("audit", "the control plane's signed audit log"),
    "conf": ("conf", "Spark configuration: check what spark-conf/ guarantees"),
    "manifest": (
        "manifest",
        "render a verified run as a SparkApplication for the Kubeflow Spark Operator",
    ),
}
"""Top-level command -> (module of ``jobruntime.cli`` that registers it, its help)."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _register(sub: argparse._SubParsersAction, module: str) -> None:  # type: ignore[type-arg]
    importlib.import_module(f"jobruntime.cli.{module}").register(sub)


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command tree; with ``command``, only that command's module is imported and the
    others are listed from :data:`COMMANDS`. Without it, every module registers."""
    p = argparse.ArgumentParser(
        prog="jobruntime", description="Confidential Spark job runtime: keys, specs, runs."
    )
    p.add_argument("--version", action="version", version=f"jobruntime {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    registered: set[str] = set()
    for name, (module, help_text) in COMMANDS.items():
        if module in registered:
            continue
        if command is None or COMMANDS.get(command, ("",))[0] == module:
            _register(sub, module)
            registered.add(module)
        else:
            sub.add_parser(name, help=help_text)
    return p


def _command(argv: Sequence[str]) -> str:
    """The command argv names (the first word that is not an option), or ``""``."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    words = list(sys.argv[1:] if argv is None else argv)
    args = parser(_command(words)).parse_args(words)
    return run_main("jobruntime", lambda: int(args.handler(args)))
