"""``jobruntime kms``: a data owner's dataset master keys and their release policies."""

from __future__ import annotations

import argparse
from typing import Any

from jobruntime.cli.common import add_connection, client_from, print_json
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy
from jobruntime.spec.codec import validate_model


def register(sub: Any) -> None:
    p = sub.add_parser("kms", help="dataset master keys in the control plane's KMS")
    ks = p.add_subparsers(dest="kms_command", required=True)

    c = ks.add_parser("create-key", help="create a key (ORG/NAME) with its release policy")
    c.add_argument("key_id")
    c.add_argument(
        "--measurement",
        action="append",
        required=True,
        help="allowed launch measurement, hex SHA-384 (repeat)",
    )
    c.add_argument(
        "--min-tcb",
        action="append",
        default=[],
        metavar="PART=N",
        help="minimum TCB component: bootloader, tee, snp, microcode, fmc",
    )
    c.add_argument("--min-guest-svn", type=int, default=0)
    c.add_argument(
        "--allow-emulated",
        action="store_true",
        help="also release to the emulated TEE (local work only)",
    )
    c.add_argument(
        "--allow-node-isolation",
        action="store_true",
        help="also release to runs in node isolation, which TRUSTS WHOEVER CONTROLS THE "
        "CLUSTER (the evidence says nothing about the pod); default: pod isolation only",
    )
    c.add_argument(
        "--vmpl",
        action="append",
        type=int,
        help="accepted VMPL (repeat; default 0 only)",
    )
    c.add_argument("--forbid-smt", action="store_true", help="refuse guests that allow SMT")
    c.add_argument(
        "--require-single-socket", action="store_true", help="refuse multi-socket guests"
    )
    c.add_argument(
        "--chip-id", action="append", default=[], help="accept only this chip (hex CHIP_ID)"
    )
    add_connection(c, "")
    c.set_defaults(handler=create_key)

    s = ks.add_parser("show", help="a key's owner and release policy (never its material)")
    s.add_argument("key_id")
    add_connection(s, "operator")
    s.set_defaults(handler=show)


def create_key(args: argparse.Namespace) -> int:
    if not args.principal:
        args.principal = f"owner:{args.key_id.split('/', 1)[0]}"
    kinds = [EvidenceKind.SEV_SNP, EvidenceKind.AZURE_VTPM]
    if args.allow_emulated:
        kinds.append(EvidenceKind.EMULATED)
    floor = dict(part.partition("=")[::2] for part in args.min_tcb)
    policy = validate_model(
        ReleasePolicy,
        {
            "evidence_kinds": kinds,
            "measurements": args.measurement,
            "minimum_tcb": floor,
            "minimum_guest_svn": args.min_guest_svn,
            "isolation": ["pod", "node"] if args.allow_node_isolation else ["pod"],
            "vmpls": args.vmpl or [0],
            "allow_smt": not args.forbid_smt,
            "require_single_socket": args.require_single_socket,
            "chip_ids": args.chip_id,
        },
        "release policy",
    )
    if args.allow_node_isolation:
        print(
            "WARNING: this key will also be released in node isolation, where whoever "
            "controls the cluster can run any pod it likes on the confidential node"
        )
    with client_from(args) as client:
        info = client.create_key(args.key_id, policy)
    print(
        f"created {info.key_id} for {info.owner}; released only to "
        f"{', '.join(k.value for k in policy.evidence_kinds)} evidence in "
        f"{' or '.join(policy.isolation)} isolation"
    )
    return 0


def show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print_json(client.key_info(args.key_id).model_dump(mode="json"))
    return 0
