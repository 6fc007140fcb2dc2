"""``jobruntime spec``: sign a spec into a DSSE envelope, verify one offline."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import canonical, parse_model, sha256_digest
from jobruntime.spec.models import JobRunSpec, utcnow
from jobruntime.verification.signed import verify_response


def register(sub: Any) -> None:
    p = sub.add_parser("spec", help="sign and verify job-run specs")
    ss = p.add_subparsers(dest="spec_command", required=True)

    s = ss.add_parser("sign", help="sign a spec JSON file into a DSSE envelope")
    s.add_argument("spec", type=Path)
    s.add_argument(
        "--key",
        type=Path,
        action="append",
        required=True,
        help="private key; repeat for several signatures",
    )
    s.add_argument("--out", type=Path, help="envelope file (default: stdout)")
    s.set_defaults(handler=sign)

    v = ss.add_parser("verify", help="verify an envelope or a {envelope, approvals} document")
    v.add_argument("signed", type=Path)
    v.add_argument("--trust-root", type=Path, required=True)
    v.add_argument("--run-id", help="also require this run id")
    v.add_argument(
        "--no-approvals",
        action="store_true",
        help="check only the control plane's signature and the window",
    )
    v.add_argument("--clock-skew", type=float, default=60.0)
    v.set_defaults(handler=verify)


def sign(args: argparse.Namespace) -> int:
    spec = parse_model(JobRunSpec, args.spec.read_bytes(), str(args.spec))
    keys = [SigningKey.load(k) for k in args.key]
    env = envelope.sign(canonical(spec), envelope.SPEC_TYPE, keys)
    text = envelope.dumps(env)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    digest = sha256_digest(canonical(spec))
    print(f"signed {spec.run_id} ({digest}) with {len(keys)} key(s)", file=sys.stderr)
    return 0


def verify(args: argparse.Namespace) -> int:
    trust_root = TrustRoot.load(args.trust_root)
    raw = args.signed.read_bytes()
    doc = json.loads(raw) if raw.strip().startswith(b"{") else None
    if isinstance(doc, dict) and "payloadType" in doc:
        raw = json.dumps({"envelope": doc, "approvals": []}).encode()
    verified = verify_response(
        raw,
        trust_root,
        now=utcnow(),
        run_id=args.run_id,
        skew=timedelta(seconds=args.clock_skew),
        require_approvals=not args.no_approvals,
    )
    print(f"verified {verified.spec.run_id} ({verified.digest})")
    for line in verified.checks:
        print(f"  ok  {line}")
    return 0
