"""``jobruntime emulator``: set up and serve the local control plane."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_json, add_state, command, emit, group
from jobruntime.emulator.state import TOKENS, TRUST_ROOT, init_state, owner_key_path
from jobruntime.signing.keys import ALGORITHMS

DEFAULT_OWNERS = ["org-a", "org-b"]


def register(sub: Any) -> None:
    es = group(sub, "emulator", "the local control-plane emulator")

    i = command(
        es,
        "init",
        "create a state dir: keys, tokens, trust root",
        [
            "jobruntime emulator init",
            "jobruntime emulator init --owner org-a --owner org-b --algorithm ecdsa-p384",
            "JOBRUNTIME_STATE=/tmp/jr jobruntime emulator init --json",
        ],
    )
    _state_args(i)
    add_json(i, "the state's files")
    i.set_defaults(handler=init)

    s = command(
        es,
        "serve",
        "serve the /v1 API on 127.0.0.1 (init first if needed)",
        [
            "jobruntime emulator serve &",
            "jobruntime emulator serve --port 0 --owner org-a --owner org-b",
        ],
        description="Serve the /v1 API on 127.0.0.1, creating the state first if needed. "
        "The URL it listens on is written to emulator.url in the state directory, where "
        "every other command finds it.",
    )
    _state_args(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on [%(default)s]")
    s.add_argument("--port", type=int, default=8470, help="port [%(default)s]; 0 picks a free one")
    s.add_argument("--tls-cert", type=Path, help="serve HTTPS with this PEM certificate")
    s.add_argument("--tls-key", type=Path, help="the PEM private key of --tls-cert")
    s.set_defaults(handler=serve)

    o = command(
        es,
        "openapi",
        "print the OpenAPI document of the /v1 API",
        ["jobruntime emulator openapi > docs/openapi.json"],
    )
    add_json(o, "the document", always=True)
    o.set_defaults(handler=openapi)


def _state_args(p: argparse.ArgumentParser) -> None:
    add_state(p, "emulator", help="the emulator's state directory")
    p.add_argument(
        "--owner",
        action="append",
        metavar="ORG",
        help="data-owner org (repeat; default org-a, org-b)",
    )
    p.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default="ed25519",
        help="signing-key algorithm of the control plane and the dev owners [%(default)s]",
    )


def init(args: argparse.Namespace) -> int:
    owners = args.owner or DEFAULT_OWNERS
    init_state(args.state, owners, args.algorithm)
    emit(
        args,
        {
            "state": str(args.state),
            "trust_root": str(args.state / TRUST_ROOT),
            "tokens": str(args.state / TOKENS),
            "owner_keys": {o: str(owner_key_path(args.state, o)) for o in owners},
            "algorithm": args.algorithm,
        },
        f"emulator state in {args.state}: trust root {args.state / TRUST_ROOT}, "
        f"tokens {args.state / TOKENS} (0600)",
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    from jobruntime.emulator.serve import serve as run_server

    if not (args.state / TOKENS).exists():
        init(args)
    run_server(args.state, args.host, args.port, args.tls_cert, args.tls_key)
    return 0


def openapi(args: argparse.Namespace) -> int:
    from jobruntime.emulator.openapi import document

    emit(args, document())
    return 0
