"""The NetworkPolicies beside a run: its pods reach each other and what the run needs.

An approved job module is trusted to read what the spec lets it read, not to send it
anywhere: with egress closed, the run's pods reach only each other (Spark's RPC and
block transfers, authenticated and AES-GCM encrypted), the cluster's DNS, the control
plane and the storage account; the driver also reaches the Kubernetes API (it creates
the executor pods) and, with that transport, Service Bus. Nothing but the run's own
pods may connect to them. NetworkPolicies add up, so the driver's extra egress is a
second policy that selects the driver alone.

Whoever controls the cluster can remove a NetworkPolicy; in pod isolation the keys
still go only to the attested pods, and this closes the door on the module, not on
the admin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobruntime.errors import ConfigError
from jobruntime.k8s import layout
from jobruntime.k8s.options import SERVICEBUS_PORTS, Egress

Doc = dict[str, Any]


def _tcp(ports: Iterable[int]) -> list[Doc]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _to_cidrs(cidrs: Iterable[str], ports: Iterable[int]) -> Doc:
    return {"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": _tcp(ports)}


def _dns(egress: Egress) -> Doc:
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": egress.dns_namespace}
                },
                "podSelector": {"matchLabels": dict(sorted(egress.dns_labels.items()))},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def require_egress(egress: Egress, *, uses_storage: bool, servicebus: bool) -> None:
    """Refuse a policy under which the run could not work: every address it needs, given."""
    needed = [
        ("--control-plane-cidr", egress.control_plane, True),
        ("--api-server-cidr", egress.api_server, True),
        ("--storage-cidr", egress.storage, uses_storage),
        ("--servicebus-cidr", egress.servicebus, servicebus),
    ]
    missing = [flag for flag, given, wanted in needed if wanted and not given]
    if missing:
        raise ConfigError(
            f"the NetworkPolicy closes the pods' egress to what the run needs: give "
            f"{', '.join(missing)} (CIDRs; docs/kubernetes.md)"
        )


def policies(
    name: str,
    namespace: str,
    run_labels: Mapping[str, str],
    egress: Egress,
    *,
    uses_storage: bool,
    servicebus: bool,
) -> list[Doc]:
    """The run's pods' policy, and the driver's extra egress."""
    require_egress(egress, uses_storage=uses_storage, servicebus=servicebus)
    run_only = {layout.RUN_LABEL: run_labels[layout.RUN_LABEL]}
    same_run = {"podSelector": {"matchLabels": run_only}}
    rules = [
        {"to": [same_run]},
        _dns(egress),
        _to_cidrs(egress.control_plane, [egress.control_plane_port]),
    ]
    if uses_storage:
        rules.append(_to_cidrs(egress.storage, [443]))
    pods = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-pods", "namespace": namespace, "labels": dict(run_labels)},
        "spec": {
            "podSelector": {"matchLabels": run_only},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [same_run]}],
            "egress": rules,
        },
    }
    driver_rules = [_to_cidrs(egress.api_server, [egress.api_server_port])]
    if servicebus:
        driver_rules.append(_to_cidrs(egress.servicebus, SERVICEBUS_PORTS))
    driver = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-driver", "namespace": namespace, "labels": dict(run_labels)},
        "spec": {
            "podSelector": {"matchLabels": {**run_only, layout.ROLE_LABEL: "driver"}},
            "policyTypes": ["Egress"],
            "egress": driver_rules,
        },
    }
    return [pods, driver]
