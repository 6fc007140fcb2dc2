"""``jobruntime spec``: sign a spec into a DSSE envelope, verify one offline."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_json, command, emit, group
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import canonical, parse_model, sha256_digest
from jobruntime.spec.models import JobRunSpec, utcnow
from jobruntime.verification.signed import verify_response


def register(sub: Any) -> None:
    ss = group(sub, "spec", "sign and verify job-run specs")

    s = command(
        ss,
        "sign",
        "sign a spec JSON file into a DSSE envelope",
        [
            "jobruntime spec sign spec.json --key cp.key --out spec.dsse.json",
            "jobruntime spec sign spec.json --key a.key --key b.key > spec.dsse.json",
        ],
    )
    s.add_argument("spec", type=Path, help="a job-run spec (JSON)")
    s.add_argument(
        "--key",
        type=Path,
        action="append",
        required=True,
        help="private key; repeat for several signatures",
    )
    s.add_argument("--out", type=Path, help="envelope file (default: stdout)")
    add_json(s, "the run id, spec digest and signature count (and the envelope without --out)")
    s.set_defaults(handler=sign)

    v = command(
        ss,
        "verify",
        "verify an envelope or a {envelope, approvals} document",
        [
            "jobruntime spec verify spec.dsse.json --trust-root trust-root.json --no-approvals",
            "jobruntime spec verify signed-run.json --trust-root trust-root.json "
            "--run-id run-... --json",
        ],
    )
    v.add_argument(
        "signed",
        type=Path,
        help="a DSSE envelope, or {envelope, approvals} as `jobruntime runs spec` prints it",
    )
    v.add_argument(
        "--trust-root", type=Path, required=True, help="the trust root JSON to verify against"
    )
    v.add_argument("--run-id", help="also require this run id")
    v.add_argument(
        "--no-approvals",
        action="store_true",
        help="check only the control plane's signature and the window",
    )
    v.add_argument(
        "--clock-skew",
        type=float,
        default=60.0,
        help="seconds of clock skew allowed at the validity window's ends [%(default)s]",
    )
    add_json(v, "the verified run id, digest and checks")
    v.set_defaults(handler=verify)


def sign(args: argparse.Namespace) -> int:
    spec = parse_model(JobRunSpec, args.spec.read_bytes(), str(args.spec))
    keys = [SigningKey.load(k) for k in args.key]
    env = envelope.sign(canonical(spec), envelope.SPEC_TYPE, keys)
    text = envelope.dumps(env)
    digest = sha256_digest(canonical(spec))
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        where = {"out": str(args.out)} if args.out else {"envelope": json.loads(text)}
        emit(args, {"run_id": spec.run_id, "spec_digest": digest, "signatures": len(keys), **where})
    elif not args.out:
        print(text)
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
    emit(
        args,
        {
            "run_id": verified.spec.run_id,
            "spec_digest": verified.digest,
            "checks": list(verified.checks),
        },
        "\n".join(
            [
                f"verified {verified.spec.run_id} ({verified.digest})",
                *(f"  ok  {line}" for line in verified.checks),
            ]
        ),
    )
    return 0
