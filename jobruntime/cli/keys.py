"""``jobruntime keys``: make signing keys and show their ids."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_connection, client_from, print_json
from jobruntime.controlplane.api import OwnerKeyEnrolment
from jobruntime.emulator.state import owner_key_path
from jobruntime.errors import ConfigError
from jobruntime.signing import envelope
from jobruntime.signing.keys import ALGORITHMS, SigningKey, key_id, load_public_pem
from jobruntime.signing.trustroot import TrustedKey
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="generate signing keys and show key ids")
    ks = p.add_subparsers(dest="keys_command", required=True)

    g = ks.add_parser("generate", help="write a new private key (0600) and its .pub")
    g.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519")
    g.add_argument("--out", type=Path, required=True, help="private key path; .pub beside it")
    g.add_argument(
        "--trust-entry",
        action="store_true",
        help="also print the key as a trust-root entry valid for --days",
    )
    g.add_argument("--days", type=int, default=365)
    g.set_defaults(handler=generate)

    i = ks.add_parser("id", help="print the key id (SHA-256 of the DER SubjectPublicKeyInfo)")
    i.add_argument("public_key", type=Path)
    i.set_defaults(handler=show_id)

    e = ks.add_parser(
        "enrol",
        help="add your approval key to your org's owner role of the control plane's trust root",
    )
    e.add_argument("--owner", required=True, help="your owner org (uses the token owner:ORG)")
    e.add_argument(
        "--key",
        type=Path,
        required=True,
        help="the new key's private key file: it signs its own enrolment (proof of possession)",
    )
    e.add_argument(
        "--signed-by",
        type=Path,
        action="append",
        default=[],
        metavar="KEY",
        help="a private key of your org's current approval keys; repeat up to its threshold "
        "(default: the emulator state's owners/ORG.key)",
    )
    e.add_argument("--days", type=int, default=365, help="how long the key is trusted")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection(e, "")
    e.set_defaults(handler=enrol)


def generate(args: argparse.Namespace) -> int:
    key = SigningKey.generate(args.algorithm)
    key.save(args.out)
    print(f"{key.keyid}  {args.out} ({args.algorithm})")
    if args.trust_entry:
        now = utcnow()
        entry = TrustedKey(
            keyid=key.keyid,
            public_key_pem=key.public_pem,
            not_before=now,
            not_after=now + timedelta(days=args.days),
        )
        print(entry.model_dump_json(indent=2))
    return 0


def enrol(args: argparse.Namespace) -> int:
    """Sign the enrolment with the org's current keys and the new key, then send it."""
    if not args.principal:
        args.principal = f"owner:{args.owner}"
    new = SigningKey.load(args.key)
    signers = [SigningKey.load(p) for p in args.signed_by]
    if not signers and args.emulator_state:
        signers = [SigningKey.load(owner_key_path(Path(args.emulator_state), args.owner))]
    if not signers:
        raise ConfigError("name your org's current approval key(s) with --signed-by")
    statement = OwnerKeyEnrolment(
        org=args.owner, public_key_pem=new.public_pem, days=args.days, at=utcnow()
    )
    signed = envelope.to_json(
        envelope.sign(canonical(statement), envelope.ENROLMENT_TYPE, [*signers, new])
    )
    with client_from(args) as client:
        done = client.enrol_owner_key(signed)
    if args.json:
        print_json(done.model_dump(mode="json"))
        return 0
    print(
        f"enrolled {done.keyid} for {done.owner} until {done.not_after:%Y-%m-%d}; "
        f"{done.owner} has {len(done.keyids)} keys, threshold {done.threshold}; "
        f"trust root {done.trust_root_digest}"
    )
    return 0


def show_id(args: argparse.Namespace) -> int:
    print(key_id(load_public_pem(args.public_key.read_bytes())))
    return 0
