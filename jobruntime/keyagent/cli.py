"""``python -m jobruntime.keyagent``: the key-agent sidecar's entrypoint.

Exit codes are the error classes' ``exit_code``: 0 after a clean SIGTERM/SIGINT,
2 configuration, 22 key agent (unsafe directory, socket in use), 70 unexpected.
A refusal is one line on stderr; the socket file is removed on the way out.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from jobruntime.errors import ConfigError, JobRuntimeError
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import KeySource, StaticKeySource

log = logging.getLogger("jobruntime.keyagent")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobruntime.keyagent",
        description="Serve the verified run's dataset keys to processes of this uid "
        "over a Unix socket on a memory-backed volume.",
    )
    env = os.environ.get
    p.add_argument(
        "--socket",
        type=Path,
        default=env("JOB_KEYAGENT_SOCKET"),
        help="socket path in the shared tmpfs volume [$JOB_KEYAGENT_SOCKET]",
    )
    p.add_argument(
        "--bundle-dir",
        type=Path,
        default=env("JOB_BUNDLE_DIR"),
        help="directory of the verifier's verified-bundle.json; its spec's "
        "datasets are the only ones served [$JOB_BUNDLE_DIR]",
    )
    p.add_argument(
        "--insecure-disk-socket",
        action="store_true",
        help="allow a socket directory that is not tmpfs/ramfs (local work only)",
    )
    p.add_argument(
        "--static-keys",
        type=Path,
        help="DEVELOPMENT ONLY, NOT FOR PRODUCTION: JSON {dataset: base64 key} "
        "served without attestation or KMS",
    )
    p.add_argument(
        "--log-level",
        default=env("JOB_KEYAGENT_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="[$JOB_KEYAGENT_LOG_LEVEL]",
    )
    return p


def spec_datasets(bundle_dir: Path) -> frozenset[str]:
    """Input and output names of the verified spec (imported late: pydantic is heavy)."""
    from jobruntime.spec.bundle import VerifiedBundle

    spec = VerifiedBundle.load(bundle_dir).spec
    return frozenset(d.name for d in (*spec.inputs, *spec.outputs))


def make_source(args: argparse.Namespace) -> KeySource:
    """Build the agent's key source from the command line: THE SEAM for the KMS source.

    Production wiring goes here: read the verified bundle in ``args.bundle_dir``,
    attest once, and return a source whose ``allowed`` is :func:`spec_datasets` and
    whose ``release`` asks the KMS (DESIGN.md, "Key release"). Until then only the
    development source exists, and without ``--static-keys`` the agent refuses to
    start rather than serve nothing silently.
    """
    if args.static_keys is None:
        raise ConfigError(
            "no key source: the KMS-backed source is not wired in yet; "
            "--static-keys FILE serves development keys"
        )
    allowed = spec_datasets(args.bundle_dir) if args.bundle_dir else None
    source = StaticKeySource.from_json_file(args.static_keys, allowed)
    log.warning("serving static development keys from %s: NOT FOR PRODUCTION", args.static_keys)
    return source


def serve(args: argparse.Namespace) -> None:
    """Run until SIGTERM or SIGINT, then close (removing the socket and zeroing keys)."""
    if args.socket is None:
        raise ConfigError("missing --socket (or $JOB_KEYAGENT_SOCKET)")
    stop = threading.Event()
    server: KeyAgentServer | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if server is not None:
            server.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    source = make_source(args)
    if args.insecure_disk_socket:
        log.warning("--insecure-disk-socket: the socket directory may be on a disk")
    server = KeyAgentServer(args.socket, source, require_memory_fs=not args.insecure_disk_socket)
    try:
        if stop.is_set():  # a signal came while starting
            server.stop()
        server.serve_forever()
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        serve(args)
    except JobRuntimeError as exc:
        print(f"keyagent: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # unexpected: say what kind, never what data
        print(f"keyagent: internal: unexpected {type(exc).__name__}", file=sys.stderr)
        if os.environ.get("JOB_KEYAGENT_DEBUG"):
            raise
        return 70
    return 0
