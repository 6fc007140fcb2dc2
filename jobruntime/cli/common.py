"""What every ``jobruntime`` command shares: building subcommands, the state directory,
the control-plane connection and the ``--json`` switch.

One state directory for every command: ``$JOBRUNTIME_STATE`` (default ``.state``) holds
the emulator's state in ``emulator/`` and the local cluster's in ``cluster/``. A command
that talks to a control plane reads the URL and a token from the emulator's state unless
it is given a URL or a token, so local work needs no flags and no copy-pasted secrets.

Kept light on purpose: ``emulator`` and ``cluster`` import it too, so the control-plane
client and the emulator's state models are imported only when a client is made.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import urlsplit

from jobruntime.errors import ConfigError, ControlPlaneNotRunningError

if TYPE_CHECKING:
    from jobruntime.controlplane.client import ControlPlaneClient

PROBE_TIMEOUT = 2.0
STATE_ENV = "JOBRUNTIME_STATE"
DEFAULT_STATE_DIR = Path(".state")
TRUST_ROOT_FILE = "trust-root.json"  # jobruntime.emulator.state.TRUST_ROOT, without its imports

StatePart = Literal["emulator", "cluster"]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# --- building commands ---------------------------------------------------------------


def group(sub: Subparsers, name: str, help: str) -> Subparsers:
    """A command that only holds subcommands (``runs``, ``kms``...); returns their
    subparsers. The help is also the group's description, so ``--help`` says what it is."""
    p = sub.add_parser(name, help=help, description=help)
    return p.add_subparsers(dest=f"{name.replace('-', '_')}_command", required=True)


def command(
    sub: Subparsers,
    name: str,
    help: str,
    examples: Sequence[str],
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A leaf command, made the same way everywhere: its help, a description (the help
    unless given) and an epilog of example invocations, kept one per line."""
    if not examples:
        raise ValueError(f"command {name} needs at least one example")
    text = description or help
    return sub.add_parser(
        name,
        help=help,
        description="\n\n".join(textwrap.fill(para, 78) for para in text.split("\n\n")),
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --- the state directory -------------------------------------------------------------


def default_state(part: StatePart) -> Path:
    """``$JOBRUNTIME_STATE/<part>``, else ``.state/<part>``: the one default every
    command's emulator or cluster state comes from."""
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR) / part


def add_state(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    part: StatePart,
    flag: str = "--state",
    help: str | None = None,
) -> None:
    """``--state`` (or ``flag``) defaulting to :func:`default_state`; ``dest`` follows
    ``flag`` (``--cluster-state`` -> ``args.cluster_state``)."""
    what = help or f"the {part}'s state directory"
    p.add_argument(
        flag,
        type=Path,
        default=default_state(part),
        metavar="DIR",
        help=f"{what} [%(default)s, from ${STATE_ENV} (default {DEFAULT_STATE_DIR})]",
    )


# --- the control-plane connection ----------------------------------------------------


def add_connection(p: argparse.ArgumentParser, default_as: str) -> None:
    """The connection flags; ``--emulator-state`` defaults to None so that
    :func:`emulator_state` can tell an explicit state from the default one."""
    g = p.add_argument_group("control plane")
    g.add_argument(
        "--url",
        default=os.environ.get("JOB_CONTROL_PLANE_URL"),
        help="control-plane base URL [$JOB_CONTROL_PLANE_URL; default: the local emulator's]",
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
        default=None,
        metavar="DIR",
        help="local emulator state dir: URL and token come from it "
        f"[${STATE_ENV}/emulator (default .state/emulator) unless --url or a token is given]",
    )
    g.add_argument(
        "--as",
        dest="principal",
        default=default_as,
        help=f"principal whose emulator token to use (default {default_as or 'per command'})",
    )


def emulator_state(args: argparse.Namespace) -> Path | None:
    """The emulator state a control-plane command reads: ``--emulator-state``; else the
    default one, unless the command was pointed elsewhere by a URL or a token."""
    if args.emulator_state is not None:
        return Path(args.emulator_state)
    if args.url or args.token_file or os.environ.get("JOB_TOKEN"):
        return None
    return default_state("emulator")


def trust_root_path(args: argparse.Namespace) -> Path:
    """``--trust-root``, else the emulator state's (the one :func:`emulator_state` picks)."""
    if args.trust_root:
        return Path(args.trust_root)
    state = emulator_state(args)
    if state is None:
        raise ConfigError("need --trust-root (or --emulator-state) to check the signature")
    return state / TRUST_ROOT_FILE


def client_from(args: argparse.Namespace) -> ControlPlaneClient:
    """A client for the flags of :func:`add_connection`; a stopped local control plane
    fails here at once."""
    from jobruntime.controlplane.client import ControlPlaneClient
    from jobruntime.emulator.state import URL_FILE, load_tokens

    url, token = args.url, os.environ.get("JOB_TOKEN")
    state = emulator_state(args)
    if state is not None:
        if not url:
            try:
                url = (state / URL_FILE).read_text().strip()
            except OSError:
                raise ConfigError(
                    f"no running emulator recorded in {state}: start it with "
                    f"`jobruntime emulator serve` (state in ${STATE_ENV}/emulator), or pass "
                    "--url and a token (--token-file or $JOB_TOKEN)"
                ) from None
        token = load_tokens(state).token(args.principal)
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.token_file}: {exc.strerror}") from None
    if not url or not token:
        raise ConfigError("need --url and a token (--token-file, $JOB_TOKEN or --emulator-state)")
    refuse_if_not_listening(url, state)
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


# --- output ----------------------------------------------------------------------------


def add_json(p: argparse.ArgumentParser, what: str = "the result", always: bool = False) -> None:
    """``--json``: the one switch scripts use on every command that prints. ``always`` is
    for a command whose output is one JSON document anyway (accepted, changes nothing)."""
    note = " (its output is JSON either way)" if always else ""
    p.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as one JSON document on stdout, and nothing else{note}",
    )


def jsonable(obj: Any) -> Any:
    """Pydantic models (duck-typed, so this module needs no pydantic) inside lists and
    dicts, as JSON values; anything else is left to :func:`print_json`."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, list | tuple):
        return [jsonable(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    return obj


def emit(args: argparse.Namespace, data: Any, text: str | Callable[[], str] | None = None) -> None:
    """Print the command's result: ``data`` as one JSON document with ``--json`` (or when
    there is no ``text``: the command prints JSON only), else ``text`` as it always was.
    ``text`` may be a callable so that the text is built only when it is printed."""
    if text is None or getattr(args, "json", False):
        print_json(jsonable(data))
    else:
        print(text() if callable(text) else text)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))
