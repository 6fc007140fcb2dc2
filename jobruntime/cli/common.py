"""Options shared by commands that talk to a control plane.

``--emulator-state DIR --as PRINCIPAL`` reads the URL and the token from a local
emulator's state directory, so local work needs no copy-pasted secrets.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.emulator.state import URL_FILE, load_tokens
from jobruntime.errors import ConfigError, ControlPlaneNotRunningError

PROBE_TIMEOUT = 2.0


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
    refuse_if_not_listening(url, args.emulator_state)
    return ControlPlaneClient(url, token, ca_bundle=args.ca_bundle)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_if_not_listening(url: str, state: Path | str | None = None) -> None:
    """Fail at once, saying how to start it, when a control plane on this machine refuses
    the connection: nothing listens, and the client's 30 s of retries would not change that.
    A remote URL, or any other failure, is left to the client's deadline and retries."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host or not _loopback(host):
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return  # the client reports a malformed URL
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            pass
    except ConnectionRefusedError:
        where = state or "DIR"
        raise ControlPlaneNotRunningError(
            f"no control plane listens at {url} (connection refused): start the local one "
            f"with `jobruntime emulator serve --state {where}` or `make demo`"
        ) from None
    except OSError:
        return


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))
