"""``jobruntime runs`` and ``jobruntime approve``: submit, watch, approve, cancel runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_connection, client_from, print_json
from jobruntime.signing.approvals import sign_approval
from jobruntime.signing.keys import SigningKey
from jobruntime.spec.checks import decode
from jobruntime.spec.codec import parse_model
from jobruntime.spec.models import JobRunRequest, utcnow


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
    with client_from(args) as client:
        subject = decode(client.signed_run_bytes(args.run_id), utcnow())
        approval = sign_approval(subject.spec, subject.spec_digest, args.owner, key, utcnow())
        resp = client.approve(args.run_id, approval)
    inputs = ", ".join(f"{d.name} ({d.owner})" for d in subject.spec.inputs) or "none"
    print(
        f"{args.owner} approved {resp.run_id} ({subject.spec_digest}) job {subject.spec.job_id},"
        f" inputs: {inputs}; run is {resp.state.value}"
    )
    return 0
