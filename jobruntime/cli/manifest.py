"""``jobruntime manifest RUN_ID``: the run's SparkApplication, NetworkPolicies and Secrets' names.

Three uses, in the order an operator meets them (docs/kubernetes.md):

- ``--policy-input``: pod isolation, before approval: the driver and executor pods as
  plain Pods, for ``az confcom katapolicygen``;
- ``--set-workload`` with ``--cc-policy ROLE=FILE`` (or ``--host-data ROLE=HEX``): name
  each role's HOST_DATA in the spec, before any owner approves;
- by default: the manifest to ``kubectl apply``, on stdout or ``-o FILE``.

The run is fetched and verified against the trust root first (as ``jobruntime approve``
does); a spec whose signature does not check out is refused with its own code.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import sys
from pathlib import Path
from typing import Any

from jobruntime.cli.common import add_connection, client_from, command, trust_root_path
from jobruntime.controlplane.api import RunState
from jobruntime.errors import ConfigError
from jobruntime.k8s import options as opt
from jobruntime.k8s.confcom import workload_host_data
from jobruntime.k8s.render import Rendered, render, render_policy_input
from jobruntime.k8s.source import name_workload, verified_run
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.sparkconf.check import effective_conf
from jobruntime.sparkconf.spark_home import default_conf_dir
from jobruntime.spec.models import PodRole

KUBERNETES_CONF = "kubernetes.conf"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def register(sub: Any) -> None:
    p = command(
        sub,
        "manifest",
        "render a verified run as a SparkApplication for the Kubeflow Spark Operator",
        [
            "jobruntime manifest run-... --image-repo myacr.azurecr.io/jobruntime "
            "--policy-input driver > driver-pod.yaml",
            "jobruntime manifest run-... --set-workload --cc-policy driver=driver.rego.b64 "
            "--cc-policy executor=executor.rego.b64",
            "jobruntime manifest run-... --image-repo myacr.azurecr.io/jobruntime "
            "--control-plane-cidr 10.0.0.4/32 --storage-cidr 10.1.0.0/24 -o run.yaml",
        ],
        description="Render the run's SparkApplication (pod templates only), its "
        "NetworkPolicies and the names of the Secrets it reads, from the run's signed spec "
        "verified against the trust root. See docs/kubernetes.md.\n\n"
        "The output is YAML for kubectl (on stdout or -o FILE); notes and warnings go to "
        "stderr. There is no --json: the JSON view of the run is `jobruntime runs show "
        "RUN_ID --json`.",
    )
    p.add_argument("run_id", help="the run id (run-...)")
    p.add_argument(
        "--trust-root",
        type=Path,
        help="checks the control plane's signature (default: the emulator state's)",
    )
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--image-repo", help="the image's repository; the spec pins its digest")
    p.add_argument(
        "--namespace", default=opt.DEFAULT_NAMESPACE, help="the run's namespace [%(default)s]"
    )
    p.add_argument(
        "--conf-dir",
        type=Path,
        help="spark-defaults.conf and kubernetes.conf, sent as sparkConf "
        "[$SPARK_CONF_DIR, else the checkout's spark-conf/]",
    )
    p.add_argument("--spark-version", help="the image's Spark [the locked pyspark's]")

    pods = p.add_argument_group("pods")
    pods.add_argument(
        "--executors", type=int, default=2, help="number of executor pods [%(default)s]"
    )
    pods.add_argument("--driver-cores", type=int, default=1, help="driver cores [%(default)s]")
    pods.add_argument("--driver-memory", default="2g", help="driver memory [%(default)s]")
    pods.add_argument(
        "--executor-cores", type=int, default=1, help="cores per executor [%(default)s]"
    )
    pods.add_argument("--executor-memory", default="2g", help="memory per executor [%(default)s]")
    pods.add_argument(
        "--local-dir-size", default="20Gi", help="Spark's scratch emptyDir [%(default)s]"
    )
    pods.add_argument(
        "--service-account",
        default=opt.DEFAULT_SERVICE_ACCOUNT,
        help="the driver's service account [%(default)s]",
    )
    pods.add_argument(
        "--token-secret",
        default=opt.DEFAULT_TOKEN_SECRET,
        help="Secret with the control plane's verifier-role token [%(default)s]",
    )
    pods.add_argument(
        "--storage-secret",
        default=opt.DEFAULT_STORAGE_SECRET,
        help="Secret with the storage account's connection string [%(default)s]",
    )
    pods.add_argument(
        "--servicebus-secret",
        default=opt.DEFAULT_SERVICEBUS_SECRET,
        help="Secret with the Service Bus connection string [%(default)s]",
    )
    pods.add_argument(
        "--heartbeat-transport",
        choices=["http", "servicebus"],
        default="http",
        help="how the heartbeat sidecar reports to the control plane [%(default)s]",
    )
    pods.add_argument(
        "--heartbeat-interval",
        type=float,
        default=10.0,
        help="seconds between heartbeats [%(default)s]",
    )

    iso = p.add_argument_group("isolation")
    iso.add_argument(
        "--runtime-class",
        default=opt.DEFAULT_RUNTIME_CLASS,
        help="pod isolation's Confidential Containers runtime class",
    )
    iso.add_argument(
        "--cc-policy",
        action="append",
        default=[],
        metavar="ROLE=FILE",
        help="pod isolation: a role's agent policy (base64, as katapolicygen writes it); "
        "its SHA-256 must be the spec's HOST_DATA for the role",
    )
    iso.add_argument(
        "--host-data",
        action="append",
        default=[],
        metavar="ROLE=HEX",
        help="with --set-workload: a role's HOST_DATA as 64 hex digits, instead of --cc-policy",
    )
    iso.add_argument(
        "--set-workload",
        action="store_true",
        help="name each role's HOST_DATA in the spec (before any approval), then stop",
    )
    iso.add_argument(
        "--policy-input",
        choices=["driver", "executor"],
        metavar="ROLE",
        help="render this role's pod as a plain Pod for az confcom katapolicygen, then stop",
    )
    iso.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"node isolation (default {opt.NODE_POOL_LABEL}={opt.NODE_POOL_VALUE})",
    )
    iso.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY=VALUE:EFFECT",
        help=f"node isolation (default {opt.NODE_POOL_LABEL}={opt.NODE_POOL_VALUE}:NoSchedule)",
    )

    net = p.add_argument_group("NetworkPolicy egress (CIDRs)")
    net.add_argument(
        "--control-plane-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="the control plane's addresses (repeat)",
    )
    net.add_argument(
        "--control-plane-port",
        type=int,
        default=opt.HTTPS,
        help="the control plane's port [%(default)s]",
    )
    net.add_argument(
        "--storage-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="the storage account's addresses (repeat)",
    )
    net.add_argument(
        "--servicebus-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="the Service Bus namespace's addresses (repeat; with --heartbeat-transport "
        "servicebus)",
    )
    net.add_argument(
        "--api-server-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="the Kubernetes API server's addresses, which the driver needs (repeat)",
    )
    net.add_argument(
        "--api-server-port",
        type=int,
        default=opt.HTTPS,
        help="the Kubernetes API server's port [%(default)s]",
    )
    net.add_argument(
        "--dns-namespace",
        default=opt.DNS_NAMESPACE,
        help="the namespace of the cluster DNS pods [%(default)s]",
    )
    net.add_argument(
        "--dns-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of the cluster DNS pods (repeat; default "
        + ",".join(f"{k}={v}" for k, v in opt.DNS_LABELS.items())
        + ")",
    )
    add_connection(p, "operator")
    p.set_defaults(handler=manifest)


def _trust_root(args: argparse.Namespace) -> TrustRoot:
    return TrustRoot.load(trust_root_path(args))


def _policies(args: argparse.Namespace) -> dict[PodRole, str]:
    policies: dict[PodRole, str] = {}
    for role, name in opt.role_values(args.cc_policy, "--cc-policy").items():
        try:
            policies[role] = Path(name).read_text().strip()
        except (OSError, UnicodeDecodeError):
            raise ConfigError(f"cannot read the {role} pod policy {name}") from None
        opt.policy_document(policies[role], role)
    return policies


def _host_data(args: argparse.Namespace) -> dict[PodRole, str]:
    values = opt.role_values(args.host_data, "--host-data")
    for role, value in values.items():
        if not _HEX64.fullmatch(value):
            raise ConfigError(f"--host-data {role}= takes 64 lower-case hex digits")
    return values


def options_from(args: argparse.Namespace) -> opt.ManifestOptions:
    if not args.image_repo:
        raise ConfigError("manifest needs --image-repo (the spec pins the image's digest)")
    # In the image Spark's configuration is $SPARK_CONF_DIR; in a checkout, spark-conf/.
    env_dir = os.environ.get("SPARK_CONF_DIR")
    conf_dir = args.conf_dir or (Path(env_dir) if env_dir else default_conf_dir())
    egress = opt.Egress(
        control_plane=opt.cidrs(args.control_plane_cidr, "--control-plane-cidr"),
        control_plane_port=opt.port(args.control_plane_port, "--control-plane-port"),
        storage=opt.cidrs(args.storage_cidr, "--storage-cidr"),
        servicebus=opt.cidrs(args.servicebus_cidr, "--servicebus-cidr"),
        api_server=opt.cidrs(args.api_server_cidr, "--api-server-cidr"),
        api_server_port=opt.port(args.api_server_port, "--api-server-port"),
        dns_namespace=opt.dns_label(args.dns_namespace, "--dns-namespace"),
        dns_labels=opt.key_values(args.dns_label, "--dns-label") or dict(opt.DNS_LABELS),
    )
    if args.heartbeat_interval <= 0:
        raise ConfigError("--heartbeat-interval takes seconds above 0")
    return opt.ManifestOptions(
        image_repo=opt.image_repository(args.image_repo),
        spark_version=args.spark_version or importlib.metadata.version("pyspark"),
        spark_conf=effective_conf(conf_dir, conf_dir / KUBERNETES_CONF),
        egress=egress,
        namespace=opt.dns_label(args.namespace, "--namespace"),
        executors=args.executors,
        driver_cores=args.driver_cores,
        driver_memory=opt.spark_memory(args.driver_memory, "--driver-memory"),
        executor_cores=args.executor_cores,
        executor_memory=opt.spark_memory(args.executor_memory, "--executor-memory"),
        local_dir_size=opt.quantity(args.local_dir_size, "--local-dir-size"),
        service_account=opt.dns_subdomain(args.service_account, "--service-account"),
        runtime_class=opt.dns_subdomain(args.runtime_class, "--runtime-class"),
        node_selector=opt.key_values(args.node_selector, "--node-selector")
        or dict(opt.DEFAULT_NODE_SELECTOR),
        tolerations=opt.tolerations(args.toleration) or opt.DEFAULT_TOLERATIONS,
        token_secret=opt.dns_subdomain(args.token_secret, "--token-secret"),
        storage_secret=opt.dns_subdomain(args.storage_secret, "--storage-secret"),
        servicebus_secret=opt.dns_subdomain(args.servicebus_secret, "--servicebus-secret"),
        heartbeat_transport=args.heartbeat_transport,
        heartbeat_interval=args.heartbeat_interval,
        cc_policies=_policies(args),
    )


def _write(rendered: Rendered, output: Path | None) -> None:
    for warning in rendered.warnings:
        print(f"jobruntime manifest: WARNING: {warning}", file=sys.stderr)
    text = rendered.yaml()
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}") from None
    print(f"jobruntime manifest: wrote {output}", file=sys.stderr)


def set_workload(args: argparse.Namespace, trust_root: TrustRoot) -> int:
    """Pod isolation, before approval: name each role's HOST_DATA in the run's spec."""
    host_data = workload_host_data(_host_data(args), _policies(args))
    with client_from(args) as client:
        verified = name_workload(client, args.run_id, trust_root, host_data)
    print(
        f"{args.run_id} now names HOST_DATA driver={host_data['driver']} "
        f"executor={host_data['executor']}; spec {verified.digest}: "
        "the owners approve this digest next"
    )
    return 0


def manifest(args: argparse.Namespace) -> int:
    trust_root = _trust_root(args)
    if args.set_workload and args.policy_input:
        raise ConfigError("--set-workload and --policy-input are separate steps")
    if args.set_workload:
        return set_workload(args, trust_root)
    if args.host_data:
        raise ConfigError("--host-data is for --set-workload; the spec names HOST_DATA")
    options = options_from(args)  # every option checked before the control plane is asked
    with client_from(args) as client:
        verified = verified_run(client, args.run_id, trust_root)
        state = client.status(args.run_id).state
    if args.policy_input:
        _write(render_policy_input(verified, options, args.policy_input), args.output)
        return 0
    rendered = render(verified, options)
    if state is RunState.PENDING_APPROVAL:
        print(
            f"jobruntime manifest: note: {args.run_id} is not approved yet; its pods refuse "
            "to start until every owner has approved this spec",
            file=sys.stderr,
        )
    _write(rendered, args.output)
    return 0
