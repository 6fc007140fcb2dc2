"""``jobruntime audit``: export the audit log and verify its chain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jobruntime.cli.common import add_connection, add_json, client_from, command, emit, group
from jobruntime.controlplane.api import AuditLog
from jobruntime.controlplane.audit import verify_checkpoint, verify_log
from jobruntime.errors import AuditChainError, ConfigError
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import describe
from jobruntime.spec.models import utcnow


def register(sub: Any) -> None:
    aus = group(sub, "audit", "the control plane's signed audit log")

    v = command(
        aus,
        "verify",
        "check every hash link and signature of the log",
        [
            "jobruntime audit verify --trust-root .state/emulator/trust-root.json",
            "jobruntime audit verify --trust-root trust-root.json --checkpoint last.json "
            "--save-checkpoint last.json",
            "jobruntime audit verify --trust-root trust-root.json --file audit.json --json",
        ],
    )
    v.add_argument(
        "--trust-root",
        type=Path,
        required=True,
        help="the trust root whose audit keys signed the log",
    )
    v.add_argument("--file", type=Path, help="an exported log instead of fetching it")
    v.add_argument(
        "--checkpoint",
        type=Path,
        help="a checkpoint saved earlier: the log must extend it (catches a rolled-back log)",
    )
    v.add_argument(
        "--save-checkpoint",
        type=Path,
        help="where to keep this answer's verified checkpoint for the next verify",
    )
    add_json(v, "the verified count and head")
    add_connection(v, "operator")
    v.set_defaults(handler=verify)

    m = command(
        aus,
        "mine",
        "the entries about your org's keys, datasets and runs (an owner's view)",
        ["jobruntime audit mine --owner org-a", "jobruntime audit mine --owner org-a --json"],
    )
    m.add_argument("--owner", required=True, help="your owner org (uses the token owner:ORG)")
    add_json(m, "the entries")
    add_connection(m, "")
    m.set_defaults(handler=mine)

    e = command(
        aus,
        "export",
        "print the whole log as JSON",
        ["jobruntime audit export > audit.json"],
    )
    add_json(e, "the log", always=True)
    add_connection(e, "operator")
    e.set_defaults(handler=export)


def _fetch(args: argparse.Namespace) -> AuditLog:
    if getattr(args, "file", None):
        try:
            return AuditLog.model_validate_json(args.file.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
        except ValidationError as exc:
            raise AuditChainError(f"{args.file} is not an audit log: {describe(exc)}") from None
    with client_from(args) as client:
        return client.audit()


def verify(args: argparse.Namespace) -> int:
    log = _fetch(args)
    root = TrustRoot.load(args.trust_root)
    now = utcnow()
    earlier = None
    if args.checkpoint:
        try:
            saved = json.loads(args.checkpoint.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read {args.checkpoint}: {exc.strerror}") from None
        except ValueError:
            raise AuditChainError(f"{args.checkpoint} is not a checkpoint") from None
        earlier = verify_checkpoint(saved, root, now)
    point = verify_log(log.entries, log.checkpoint, root, now, earlier)
    if args.save_checkpoint:
        args.save_checkpoint.write_text(json.dumps(log.checkpoint))
    extends = f"; extends the saved checkpoint of {earlier.count}" if earlier else ""
    emit(
        args,
        {
            "entries": point.count,
            "head": f"sha256:{point.head}",
            "extends": earlier.count if earlier else None,
        },
        f"audit chain ok: {point.count} entries, head sha256:{point.head}{extends}",
    )
    return 0


def export(args: argparse.Namespace) -> int:
    print(_fetch(args).model_dump_json(indent=2))
    return 0


def mine(args: argparse.Namespace) -> int:
    if not args.principal:
        args.principal = f"owner:{args.owner}"
    with client_from(args) as client:
        entries = client.owner_audit()
    lines = [
        f"{e.seq:>6}  {e.at:%Y-%m-%d %H:%M:%S}  {e.event:<28} {e.run_id or '-'}  "
        f"{e.actor}  {json.dumps(e.details, sort_keys=True)}"
        for e in entries
    ]
    emit(args, entries, "\n".join(lines) or f"no audit entries about {args.owner}")
    return 0
