"""``jobruntime runs`` and ``jobruntime approve``: submit, watch, approve, cancel runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jobruntime.cli.common import (
    add_connection,
    add_json,
    client_from,
    command,
    emit,
    group,
    trust_root_path,
)
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.errors import ConfirmationRequiredError
from jobruntime.signing.approvals import sign_approval, tally
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import parse_model
from jobruntime.spec.models import JobRunRequest, utcnow
from jobruntime.verification.signed import VerifiedSpec, verify_response


def register(sub: Any) -> None:
    rs = group(sub, "runs", "submit, inspect and cancel job runs")

    s = command(
        rs,
        "submit",
        "submit a job-run request (JSON)",
        ["jobruntime runs submit request.json", "jobruntime runs submit request.json --json"],
    )
    s.add_argument(
        "request", type=Path, help="a job-run request: job, module digest, datasets, parameters"
    )
    add_json(s, "the run id, spec digest and state")
    add_connection(s, "submitter")
    s.set_defaults(handler=submit)

    st = command(
        rs,
        "status",
        "show a run's state and approvals",
        ["jobruntime runs status run-..."],
    )
    st.add_argument("run_id", help="the run id (run-...)")
    add_json(st, "the status", always=True)
    add_connection(st, "submitter")
    st.set_defaults(handler=status)

    c = command(
        rs,
        "cancel",
        "cancel a run",
        ["jobruntime runs cancel run-... --reason 'wrong input'"],
    )
    c.add_argument("run_id", help="the run id (run-...)")
    c.add_argument(
        "--reason", default="cancelled by request", help="recorded in the audit log [%(default)s]"
    )
    add_json(c, "the run's new state")
    add_connection(c, "operator")
    c.set_defaults(handler=cancel)

    ls = command(
        rs,
        "list",
        "the runs you may see: a submitter's own, an owner's org's, an operator's all",
        [
            "jobruntime runs list",
            "jobruntime runs list --owner org-a --limit 20",
            "jobruntime runs list --as operator --json",
        ],
    )
    ls.add_argument("--owner", help="list as this owner org (token owner:ORG)")
    ls.add_argument("--limit", type=int, help="at most this many runs")
    add_json(ls, "the runs")
    add_connection(ls, "")
    ls.set_defaults(handler=list_runs)

    sh = command(
        rs,
        "show",
        "the run's spec, verified against the trust root, as its owners review it",
        ["jobruntime runs show run-... --owner org-a", "jobruntime runs show run-... --json"],
    )
    sh.add_argument("run_id", help="the run id (run-...)")
    sh.add_argument("--owner", help="read as this owner org (token owner:ORG)")
    sh.add_argument(
        "--trust-root",
        type=Path,
        help="checks the control plane's signature (default: the emulator state's)",
    )
    add_json(sh, "the verified review")
    add_connection(sh, "")
    sh.set_defaults(handler=show)

    sp = command(
        rs,
        "spec",
        "fetch the signed spec and approvals",
        ["jobruntime runs spec run-... > signed-run.json"],
    )
    sp.add_argument("run_id", help="the run id (run-...)")
    add_json(sp, "the signed spec and approvals", always=True)
    add_connection(sp, "submitter")
    sp.set_defaults(handler=spec)

    a = command(
        sub,
        "approve",
        "approve a run as a data owner (signs its spec digest)",
        [
            "jobruntime approve run-... --owner org-a --key .state/emulator/owners/org-a.key",
            "jobruntime approve run-... --owner org-a --key org-a.key --yes --json",
        ],
        description="Approve a run as a data owner: fetch its spec, verify the control "
        "plane's signature, show what it runs on what, ask, then sign its exact digest.",
    )
    a.add_argument("run_id", help="the run id (run-...)")
    a.add_argument("--key", type=Path, required=True, help="the owner's approval key")
    a.add_argument("--owner", required=True, help="the owner org approving")
    a.add_argument(
        "--yes",
        action="store_true",
        help="sign without asking (scripts); without it, asks y/N on a terminal and "
        "refuses when there is none",
    )
    add_json(a, "the review and the result")
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
    emit(args, resp, f"submitted {resp.run_id} ({resp.spec_digest}), {resp.state.value}")
    return 0


def status(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        emit(args, client.status(args.run_id))
    return 0


def cancel(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        st = client.cancel(args.run_id, args.reason)
    emit(args, st, f"{st.run_id} is {st.state.value}")
    return 0


def spec(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        emit(args, client.signed_run(args.run_id))
    return 0


def _principal(args: argparse.Namespace, default: str) -> None:
    if not args.principal:
        owner = getattr(args, "owner", None)
        args.principal = f"owner:{owner}" if owner else default


def _trust_root(args: argparse.Namespace) -> TrustRoot:
    return TrustRoot.load(trust_root_path(args))


def list_runs(args: argparse.Namespace) -> int:
    _principal(args, "submitter")
    with client_from(args) as client:
        found = client.all_runs(args.limit)
    lines = [
        f"{r.run_id}  {r.state.value:<16} {r.job_id:<20} "
        f"owners {','.join(r.required_owners)}  {r.created_at:%Y-%m-%d %H:%M:%S}"
        for r in found
    ]
    emit(args, found, "\n".join(lines) or "no runs")
    return 0


def _fetch_verified(client: ControlPlaneClient, run_id: str, root: TrustRoot) -> VerifiedSpec:
    """Verify, then read: only a spec the control plane signed is shown or signed."""
    return verify_response(
        client.signed_run_bytes(run_id), root, now=utcnow(), run_id=run_id, review=True
    )


def review(verified: VerifiedSpec, root: TrustRoot) -> dict[str, Any]:
    """What an owner reviews before approving: every field that decides what runs on what."""
    spec = verified.spec
    counted = tally(verified.approvals, spec, verified.digest, root, utcnow())
    return {
        "run_id": spec.run_id,
        "spec_digest": verified.digest,
        "job_id": spec.job_id,
        "workspace": spec.workspace,
        "module": {
            "import_name": spec.module.import_name,
            "entry": spec.module.entry,
            "sha256": spec.module.sha256,
        },
        "image_digest": spec.image_digest,
        "isolation": spec.workload.isolation,
        "host_data": dict(spec.workload.host_data),
        "parameters": spec.parameters,
        "inputs": [d.model_dump(mode="json") for d in spec.inputs],
        "outputs": [d.model_dump(mode="json") for d in spec.outputs],
        "validity": spec.validity.model_dump(mode="json"),
        "approvals": {
            o: {"keys": len(t.keyids), "needed": t.needed, "met": t.met}
            for o, t in counted.owners.items()
        },
    }


def render(r: dict[str, Any]) -> str:
    def datasets(items: list[dict[str, Any]]) -> list[str]:
        return [
            f"    {d['name']}: {d['uri']}  owner {d['owner']}  key {d['key_id']}" for d in items
        ] or ["    none"]

    host = r["host_data"]
    lines = [
        f"run          {r['run_id']}",
        f"spec digest  {r['spec_digest']}  (control-plane signature verified)",
        f"job          {r['job_id']}  (workspace {r['workspace']})",
        f"module       {r['module']['import_name']}:{r['module']['entry']}"
        f"  sha256:{r['module']['sha256']}",
        f"image        {r['image_digest']}",
        f"isolation    {r['isolation']}"
        + (
            "  (node isolation: trusts whoever controls the cluster)"
            if r["isolation"] == "node"
            else ""
        ),
    ]
    for role in ("driver", "executor"):
        lines.append(f"HOST_DATA    {role}: {host.get(role, '-')}")
    lines.append("parameters")
    params = r["parameters"]
    lines += [f"    {k} = {json.dumps(v)}" for k, v in sorted(params.items())] or ["    none"]
    lines += ["inputs", *datasets(r["inputs"]), "outputs", *datasets(r["outputs"])]
    lines.append(f"valid        {r['validity']['not_before']} .. {r['validity']['expires']}")
    lines.append("approvals")
    lines += [
        f"    {o}: {a['keys']} of {a['needed']} keys{' (met)' if a['met'] else ''}"
        for o, a in sorted(r["approvals"].items())
    ]
    return "\n".join(lines)


def show(args: argparse.Namespace) -> int:
    _principal(args, "submitter")
    root = _trust_root(args)
    with client_from(args) as client:
        verified = _fetch_verified(client, args.run_id, root)
    summary = review(verified, root)
    emit(args, summary, lambda: render(summary))
    return 0


def _confirm(args: argparse.Namespace, digest: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequiredError(
            "approve asks for confirmation and there is no terminal: review with "
            "`jobruntime runs show`, then pass --yes; nothing was signed"
        )
    answer = input(f"Sign spec {digest} as {args.owner}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise ConfirmationRequiredError("not confirmed: nothing was signed")


def approve(args: argparse.Namespace) -> int:
    """Show the owner what they approve, ask, then sign exactly that digest."""
    _principal(args, "")
    key = SigningKey.load(args.key)
    root = _trust_root(args)
    with client_from(args) as client:
        verified = _fetch_verified(client, args.run_id, root)
        summary = review(verified, root)
        if not args.json:
            print(render(summary), flush=True)
        _confirm(args, verified.digest)
        approval = sign_approval(verified.spec, verified.digest, args.owner, key, utcnow())
        resp = client.approve(args.run_id, approval)
    emit(
        args,
        {
            "review": summary,
            "signed": {"spec_digest": verified.digest, "owner": args.owner, "keyid": key.keyid},
            "state": resp.state.value,
        },
        f"{args.owner} signed {verified.digest} with key {key.keyid} for {resp.run_id};"
        f" run is {resp.state.value}",
    )
    return 0
