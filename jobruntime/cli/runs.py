"""``jobruntime runs`` and ``jobruntime approve``: submit, watch, approve, cancel runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_connection, client_from, print_json
from jobruntime.errors import ConfigError
from jobruntime.signing.approvals import sign_approval
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import parse_model
from jobruntime.spec.models import JobRunRequest, utcnow
from jobruntime.verification.signed import verify_response


def register(sub: Any) -> None:
    p = sub.add_parser("runs", help="submit, inspect and cancel job runs")
    rs = p.add_subparsers(dest="runs_command", required=True)

    s = rs.add_parser("submit", help="submit a job-run request (JSON)")
    s.add_argument("request", type=Path)
    add_connection(s, "submitter")
    s.set_defaults(handler=submit)

    st = rs.add_parser("status", help="show a run's state and approvals")
    st.add_argument("run_id")
    add_connection(st, "submitter")
    st.set_defaults(handler=status)

    c = rs.add_parser("cancel", help="cancel a run")
    c.add_argument("run_id")
    c.add_argument("--reason", default="cancelled by request")
    add_connection(c, "operator")
    c.set_defaults(handler=cancel)

    sp = rs.add_parser("spec", help="fetch the signed spec and approvals")
    sp.add_argument("run_id")
    add_connection(sp, "submitter")
    sp.set_defaults(handler=spec)

    a = sub.add_parser("approve", help="approve a run as a data owner (signs its spec digest)")
    a.add_argument("run_id")
    a.add_argument("--key", type=Path, required=True, help="the owner's approval key")
    a.add_argument("--owner", required=True, help="the owner org approving")
    a.add_argument(
        "--trust-root",
        type=Path,
        help="checks the control plane's signature before signing "
        "(default: the emulator state's trust-root.json)",
    )
    add_connection(a, "")
    a.set_defaults(handler=approve)


def submit(args: argparse.Namespace) -> int:
    request = parse_model(JobRunRequest, args.request.read_bytes(), str(args.request))
    with client_from(args) as client:
        resp = client.submit(request)
    print(f"submitted {resp.run_id} ({resp.spec_digest}), {resp.state.value}")
    return 0


def status(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print_json(client.status(args.run_id).model_dump(mode="json"))
    return 0


def cancel(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        st = client.cancel(args.run_id, args.reason)
    print(f"{st.run_id} is {st.state.value}")
    return 0


def spec(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print_json(client.signed_run(args.run_id).model_dump(mode="json"))
    return 0


def approve(args: argparse.Namespace) -> int:
    """Show the owner what they approve, then sign exactly that digest."""
    if not args.principal:
        args.principal = f"owner:{args.owner}"
    key = SigningKey.load(args.key)
    trust_root = args.trust_root or (
        Path(args.emulator_state) / "trust-root.json" if args.emulator_state else None
    )
    if trust_root is None:
        raise ConfigError("approve needs --trust-root (or --emulator-state)")
    with client_from(args) as client:
        # Verify, then read: only a spec the control plane signed is shown and signed.
        verified = verify_response(
            client.signed_run_bytes(args.run_id),
            TrustRoot.load(trust_root),
            now=utcnow(),
            run_id=args.run_id,
            review=True,
        )
        approval = sign_approval(verified.spec, verified.digest, args.owner, key, utcnow())
        resp = client.approve(args.run_id, approval)
    spec_ = verified.spec
    inputs = ", ".join(f"{d.name} ({d.owner})" for d in spec_.inputs) or "none"
    print(
        f"{args.owner} approved {resp.run_id} ({verified.digest}) job {spec_.job_id},"
        f" inputs: {inputs}, isolation: {spec_.workload.isolation}; run is {resp.state.value}"
    )
    return 0
