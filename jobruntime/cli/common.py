"""Options shared by commands that talk to a control plane.

``--emulator-state DIR --as PRINCIPAL`` reads the URL and the token from a local
emulator's state directory, so local work needs no copy-pasted secrets.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.emulator.state import URL_FILE, load_tokens
from jobruntime.errors import ConfigError


def add_connection(p: argparse.ArgumentParser, default_as: str) -> None:
    g = p.add_argument_group("control plane")
    g.add_argument(
        "--url",
        default=os.environ.get("JOB_CONTROL_PLANE_URL"),
        help="control-plane base URL [$JOB_CONTROL_PLANE_URL]",
    )
    g.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get("JOB_TOKEN_FILE"),
        help="file holding a bearer token [$JOB_TOKEN_FILE]",
    )
    g.add_argument(
        "--ca-bundle",
        type=Path,
        default=os.environ.get("JOB_CA_BUNDLE"),
        help="CA bundle for TLS [$JOB_CA_BUNDLE]",
    )
    g.add_argument(
        "--emulator-state",
        type=Path,
        default=os.environ.get("JOB_EMULATOR_STATE"),
        help="local emulator state dir: URL and token come from it",
    )
    g.add_argument(
        "--as",
        dest="principal",
        default=default_as,
        help=f"principal whose emulator token to use (default {default_as})",
    )


def client_from(args: argparse.Namespace) -> ControlPlaneClient:
    url, token = args.url, os.environ.get("JOB_TOKEN")
    if args.emulator_state:
        state = Path(args.emulator_state)
        if not url:
            try:
                url = (state / URL_FILE).read_text().strip()
            except OSError:
                raise ConfigError(f"no running emulator recorded in {state}") from None
        token = load_tokens(state).token(args.principal)
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.token_file}: {exc.strerror}") from None
    if not url or not token:
        raise ConfigError("need --url and a token (--token-file, $JOB_TOKEN or --emulator-state)")
    return ControlPlaneClient(url, token, ca_bundle=args.ca_bundle)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))
