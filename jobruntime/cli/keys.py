"""``jobruntime keys``: make signing keys and show their ids."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from jobruntime.cli.common import (
    add_connection,
    add_json,
    client_from,
    command,
    emit,
    emulator_state,
    group,
)
from jobruntime.controlplane.api import OwnerKeyEnrolment
from jobruntime.emulator.state import owner_key_path
from jobruntime.errors import ConfigError
from jobruntime.signing import envelope
from jobruntime.signing.keys import ALGORITHMS, SigningKey, key_id, load_public_pem
from jobruntime.signing.trustroot import TrustedKey
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow


def register(sub: Any) -> None:
    ks = group(sub, "keys", "generate signing keys and show key ids")

    g = command(
        ks,
        "generate",
        "write a new private key (0600) and its .pub",
        [
            "jobruntime keys generate --out approver.key",
            "jobruntime keys generate --algorithm ecdsa-p384 --out cp.key --trust-entry --days 90",
        ],
    )
    g.add_argument(
        "--algorithm", choices=ALGORITHMS, default="ed25519", help="key algorithm [%(default)s]"
    )
    g.add_argument("--out", type=Path, required=True, help="private key path; .pub beside it")
    g.add_argument(
        "--trust-entry",
        action="store_true",
        help="also print the key as a trust-root entry valid for --days",
    )
    g.add_argument(
        "--days", type=int, default=365, help="validity of the --trust-entry [%(default)s]"
    )
    add_json(g, "the key id, its files and the trust entry")
    g.set_defaults(handler=generate)

    i = command(
        ks,
        "id",
        "print the key id (SHA-256 of the DER SubjectPublicKeyInfo)",
        ["jobruntime keys id approver.key.pub"],
    )
    i.add_argument("public_key", type=Path, help="a PEM public key file (e.g. KEY.pub)")
    add_json(i, "the key id")
    i.set_defaults(handler=show_id)

    e = command(
        ks,
        "enrol",
        "add your approval key to your org's owner role of the control plane's trust root",
        [
            "jobruntime keys generate --out me.key",
            "jobruntime keys enrol --owner org-a --key me.key",
            "jobruntime keys enrol --owner org-a --key me.key --signed-by current.key --days 90",
        ],
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
    add_json(e)
    add_connection(e, "")
    e.set_defaults(handler=enrol)


def generate(args: argparse.Namespace) -> int:
    key = SigningKey.generate(args.algorithm)
    key.save(args.out)
    entry = None
    if args.trust_entry:
        now = utcnow()
        entry = TrustedKey(
            keyid=key.keyid,
            public_key_pem=key.public_pem,
            not_before=now,
            not_after=now + timedelta(days=args.days),
        )
    text = f"{key.keyid}  {args.out} ({args.algorithm})"
    if entry is not None:
        text += "\n" + entry.model_dump_json(indent=2)
    emit(
        args,
        {
            "keyid": key.keyid,
            "private_key": str(args.out),
            "public_key": str(args.out.with_name(args.out.name + ".pub")),
            "algorithm": args.algorithm,
            "trust_entry": entry,
        },
        text,
    )
    return 0


def enrol(args: argparse.Namespace) -> int:
    """Sign the enrolment with the org's current keys and the new key, then send it."""
    if not args.principal:
        args.principal = f"owner:{args.owner}"
    new = SigningKey.load(args.key)
    signers = [SigningKey.load(p) for p in args.signed_by]
    state = emulator_state(args)
    if not signers and state is not None:
        signers = [SigningKey.load(owner_key_path(state, args.owner))]
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
    emit(
        args,
        done,
        f"enrolled {done.keyid} for {done.owner} until {done.not_after:%Y-%m-%d}; "
        f"{done.owner} has {len(done.keyids)} keys, threshold {done.threshold}; "
        f"trust root {done.trust_root_digest}",
    )
    return 0


def show_id(args: argparse.Namespace) -> int:
    keyid = key_id(load_public_pem(args.public_key.read_bytes()))
    emit(args, {"keyid": keyid, "public_key": str(args.public_key)}, keyid)
    return 0
