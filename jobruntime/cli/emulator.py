"""``jobruntime emulator``: set up and serve the local control plane."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jobruntime.emulator.state import TOKENS, TRUST_ROOT, init_state
from jobruntime.signing.keys import ALGORITHMS

DEFAULT_OWNERS = ["org-a", "org-b"]


def register(sub: Any) -> None:
    p = sub.add_parser("emulator", help="the local control-plane emulator")
    es = p.add_subparsers(dest="emulator_command", required=True)

    i = es.add_parser("init", help="create a state dir: keys, tokens, trust root")
    _state_args(i)
    i.set_defaults(handler=init)

    s = es.add_parser("serve", help="serve the /v1 API on 127.0.0.1 (init first if needed)")
    _state_args(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8470, help="0 picks a free port")
    s.add_argument("--tls-cert", type=Path)
    s.add_argument("--tls-key", type=Path)
    s.set_defaults(handler=serve)

    o = es.add_parser("openapi", help="print the OpenAPI document of the /v1 API")
    o.set_defaults(handler=openapi)


def _state_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state",
        type=Path,
        default=Path(".state/emulator"),
        help="state directory (default .state/emulator)",
    )
    p.add_argument("--owner", action="append", help="data-owner org (repeat; default org-a, org-b)")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519")


def init(args: argparse.Namespace) -> int:
    init_state(args.state, args.owner or DEFAULT_OWNERS, args.algorithm)
    print(
        f"emulator state in {args.state}: trust root {args.state / TRUST_ROOT}, "
        f"tokens {args.state / TOKENS} (0600)"
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

    print(json.dumps(document(), indent=2, sort_keys=True))
    return 0
