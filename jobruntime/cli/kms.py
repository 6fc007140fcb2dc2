"""``jobruntime kms``: a data owner's dataset master keys and their release policies."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_connection, client_from, print_json
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy
from jobruntime.errors import ConfigError
from jobruntime.spec.codec import parse_model, validate_model


def register(sub: Any) -> None:
    p = sub.add_parser("kms", help="dataset master keys in the control plane's KMS")
    ks = p.add_subparsers(dest="kms_command", required=True)

    c = ks.add_parser("create-key", help="create a key (ORG/NAME) with its release policy")
    c.add_argument("key_id")
    c.add_argument(
        "--measurement",
        action="append",
        default=[],
        help="allowed launch measurement, hex SHA-384 (repeat); or --emulated",
    )
    c.add_argument(
        "--emulated",
        action="store_true",
        help="local work: allow the emulated TEE and its measurement "
        "(`jobruntime kms emulated-measurement`)",
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

    ls = ks.add_parser("list", help="your org's keys and their release policies")
    ls.add_argument("--owner", help="list as this owner org (token owner:ORG); default operator")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_connection(ls, "")
    ls.set_defaults(handler=list_keys)

    sp = ks.add_parser(
        "set-policy",
        help="replace a key's release policy (owner only, audited; future releases only)",
    )
    sp.add_argument("key_id", help="ORG/NAME")
    sp.add_argument("--policy", type=Path, required=True, help="a release policy JSON file")
    add_connection(sp, "")
    sp.set_defaults(handler=set_policy)

    em = ks.add_parser(
        "emulated-measurement", help="print the emulated TEE's launch measurement (hex)"
    )
    em.set_defaults(handler=emulated_measurement)

    s = ks.add_parser("show", help="a key's owner and release policy (never its material)")
    s.add_argument("key_id")
    add_connection(s, "operator")
    s.set_defaults(handler=show)


def create_key(args: argparse.Namespace) -> int:
    if not args.principal:
        args.principal = f"owner:{args.key_id.split('/', 1)[0]}"
    kinds = [EvidenceKind.SEV_SNP, EvidenceKind.AZURE_VTPM]
    if args.emulated:
        from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT

        args.allow_emulated = True
        if EMULATED_MEASUREMENT.hex() not in args.measurement:
            args.measurement.append(EMULATED_MEASUREMENT.hex())
    if not args.measurement:
        raise ConfigError(
            "name at least one --measurement, or --emulated for the emulated TEE's "
            "(`jobruntime kms emulated-measurement` prints it)"
        )
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


def list_keys(args: argparse.Namespace) -> int:
    if not args.principal:
        args.principal = f"owner:{args.owner}" if args.owner else "operator"
    with client_from(args) as client:
        keys = client.list_keys().keys
    if args.json:
        print_json([k.model_dump(mode="json") for k in keys])
        return 0
    for k in keys:
        p = k.release_policy
        print(
            f"{k.key_id}  owner {k.owner}  evidence {','.join(e.value for e in p.evidence_kinds)}"
            f"  isolation {','.join(p.isolation)}  {len(p.measurements)} measurement(s)"
        )
    if not keys:
        print("no keys")
    return 0


def set_policy(args: argparse.Namespace) -> int:
    if not args.principal:
        args.principal = f"owner:{args.key_id.split('/', 1)[0]}"
    try:
        raw = args.policy.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.policy}: {exc.strerror}") from None
    policy = parse_model(ReleasePolicy, raw, "release policy")
    with client_from(args) as client:
        info = client.set_policy(args.key_id, policy)
    print(
        f"{info.key_id}: release policy replaced; future releases only (a key already "
        f"released to a running run stays with it until the run ends: cancel it to stop it)"
    )
    return 0


def emulated_measurement(_: argparse.Namespace) -> int:
    from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT

    print(EMULATED_MEASUREMENT.hex())
    return 0
