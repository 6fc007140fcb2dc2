"""``jobruntime audit``: export the audit log and verify its chain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jobruntime.cli.common import add_connection, client_from
from jobruntime.controlplane.api import AuditLog
from jobruntime.controlplane.audit import verify_checkpoint, verify_log
from jobruntime.errors import AuditChainError, ConfigError
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import describe
from jobruntime.spec.models import utcnow


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="the control plane's signed audit log")
    aus = p.add_subparsers(dest="audit_command", required=True)

    v = aus.add_parser("verify", help="check every hash link and signature of the log")
    v.add_argument("--trust-root", type=Path, required=True)
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
    add_connection(v, "operator")
    v.set_defaults(handler=verify)

    m = aus.add_parser(
        "mine",
        help="the entries about your org's keys, datasets and runs (an owner's view)",
    )
    m.add_argument("--owner", required=True, help="your owner org (uses the token owner:ORG)")
    m.add_argument("--json", action="store_true", help="print the entries as JSON")
    add_connection(m, "")
    m.set_defaults(handler=mine)

    e = aus.add_parser("export", help="print the whole log as JSON")
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
    print(f"audit chain ok: {point.count} entries, head sha256:{point.head}{extends}")
    return 0


def export(args: argparse.Namespace) -> int:
    print(_fetch(args).model_dump_json(indent=2))
    return 0


def mine(args: argparse.Namespace) -> int:
    if not args.principal:
        args.principal = f"owner:{args.owner}"
    with client_from(args) as client:
        entries = client.owner_audit()
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return 0
    for e in entries:
        details = json.dumps(e.details, sort_keys=True)
        print(
            f"{e.seq:>6}  {e.at:%Y-%m-%d %H:%M:%S}  {e.event:<28} {e.run_id or '-'}  "
            f"{e.actor}  {details}"
        )
    if not entries:
        print(f"no audit entries about {args.owner}")
    return 0
