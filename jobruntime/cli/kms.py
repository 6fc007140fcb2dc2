"""``jobruntime kms``: a data owner's dataset master keys and their release policies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_connection, add_json, client_from, command, emit, group
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy
from jobruntime.errors import ConfigError
from jobruntime.spec.codec import parse_model, validate_model


def register(sub: Any) -> None:
    ks = group(sub, "kms", "dataset master keys in the control plane's KMS")

    c = command(
        ks,
        "create-key",
        "create a key (ORG/NAME) with its release policy",
        [
            "jobruntime kms create-key org-a/customers --emulated",
            "jobruntime kms create-key org-a/customers --measurement HEX96 --min-tcb snp=3 "
            "--chip-id HEX128",
        ],
    )
    c.add_argument("key_id", help="the new key's id, ORG/NAME (ORG is your owner org)")
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
    c.add_argument("--min-guest-svn", type=int, default=0, help="minimum guest SVN [%(default)s]")
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
    add_json(c, "the created key and its policy")
    add_connection(c, "")
    c.set_defaults(handler=create_key)

    ls = command(
        ks,
        "list",
        "your org's keys and their release policies",
        ["jobruntime kms list --owner org-a", "jobruntime kms list --json"],
    )
    ls.add_argument("--owner", help="list as this owner org (token owner:ORG); default operator")
    add_json(ls, "the keys and their policies")
    add_connection(ls, "")
    ls.set_defaults(handler=list_keys)

    sp = command(
        ks,
        "set-policy",
        "replace a key's release policy (owner only, audited; future releases only)",
        [
            "jobruntime kms show org-a/customers | jq .release_policy > policy.json  # edit it",
            "jobruntime kms set-policy org-a/customers --policy policy.json",
        ],
    )
    sp.add_argument("key_id", help="ORG/NAME")
    sp.add_argument("--policy", type=Path, required=True, help="a release policy JSON file")
    add_json(sp, "the key and its new policy")
    add_connection(sp, "")
    sp.set_defaults(handler=set_policy)

    em = command(
        ks,
        "emulated-measurement",
        "print the emulated TEE's launch measurement (hex)",
        ["jobruntime kms emulated-measurement"],
    )
    add_json(em, "the measurement")
    em.set_defaults(handler=emulated_measurement)

    s = command(
        ks,
        "show",
        "a key's owner and release policy (never its material)",
        ["jobruntime kms show org-a/customers"],
    )
    s.add_argument("key_id", help="the key id, ORG/NAME")
    add_json(s, "the key", always=True)
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
            "controls the cluster can run any pod it likes on the confidential node",
            file=sys.stderr if args.json else sys.stdout,
        )
    with client_from(args) as client:
        info = client.create_key(args.key_id, policy)
    emit(
        args,
        info,
        f"created {info.key_id} for {info.owner}; released only to "
        f"{', '.join(k.value for k in policy.evidence_kinds)} evidence in "
        f"{' or '.join(policy.isolation)} isolation",
    )
    return 0


def show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        emit(args, client.key_info(args.key_id))
    return 0


def list_keys(args: argparse.Namespace) -> int:
    if not args.principal:
        args.principal = f"owner:{args.owner}" if args.owner else "operator"
    with client_from(args) as client:
        keys = client.list_keys().keys
    lines = [
        f"{k.key_id}  owner {k.owner}  "
        f"evidence {','.join(e.value for e in k.release_policy.evidence_kinds)}  "
        f"isolation {','.join(k.release_policy.isolation)}  "
        f"{len(k.release_policy.measurements)} measurement(s)"
        for k in keys
    ]
    emit(args, keys, "\n".join(lines) or "no keys")
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
    emit(
        args,
        info,
        f"{info.key_id}: release policy replaced; future releases only (a key already "
        f"released to a running run stays with it until the run ends: cancel it to stop it)",
    )
    return 0


def emulated_measurement(args: argparse.Namespace) -> int:
    from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT

    emit(args, {"measurement": EMULATED_MEASUREMENT.hex()}, EMULATED_MEASUREMENT.hex())
    return 0
