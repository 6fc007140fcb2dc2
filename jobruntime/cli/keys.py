"""``jobruntime keys``: make signing keys and show their ids."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from jobruntime.signing.keys import ALGORITHMS, SigningKey, key_id, load_public_pem
from jobruntime.signing.trustroot import TrustedKey
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


def show_id(args: argparse.Namespace) -> int:
    print(key_id(load_public_pem(args.public_key.read_bytes())))
    return 0
