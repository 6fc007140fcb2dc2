"""What the operator chooses when rendering a run: every choice has a documented default.

The signed spec decides what runs (module, image digest, datasets, isolation, HOST_DATA);
these options decide only where and how big: the namespace, the image's repository,
node placement, sizes, the names of the Kubernetes Secrets the pods read, and the
addresses the NetworkPolicy lets the pods reach. docs/kubernetes.md lists them all.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from jobruntime.errors import ConfigError
from jobruntime.spec.models import POD_ROLES, PodRole

DEFAULT_NAMESPACE = "jobruntime"
DEFAULT_RUNTIME_CLASS = "kata-cc-isolation"
"""AKS Confidential Containers: every pod is its own SEV-SNP guest."""
DEFAULT_SERVICE_ACCOUNT = "spark-operator-spark"
"""The driver's account (it creates the executor pods): the Spark Operator Helm chart's
default for job namespaces."""
NODE_POOL_LABEL = "jobruntime.io/confidential-node"
NODE_POOL_VALUE = "sev-snp"
"""Node isolation's default placement: the label and taint the operator puts on the
confidential node pool when creating it (docs/kubernetes.md). A project-owned label,
not a cloud's, so that the pods land only where the cluster's owner said they may."""
DEFAULT_TOKEN_SECRET = "jobruntime-verifier-token"  # noqa: S105 - a Secret's name
DEFAULT_STORAGE_SECRET = "jobruntime-storage"  # noqa: S105
DEFAULT_SERVICEBUS_SECRET = "jobruntime-servicebus"  # noqa: S105
DNS_NAMESPACE = "kube-system"
DNS_LABELS = {"k8s-app": "kube-dns"}
"""CoreDNS's pods on AKS and most distributions."""
HTTPS = 443
SERVICEBUS_PORTS = (5671, 443)
"""AMQP over TLS, and AMQP over WebSockets."""


@dataclass(frozen=True)
class Resources:
    """A container's requests and limits, as Kubernetes quantities."""

    cpu: str
    memory: str
    memory_limit: str


VERIFIER_RESOURCES = Resources("100m", "64Mi", "128Mi")
KEY_AGENT_RESOURCES = Resources("50m", "48Mi", "96Mi")
HEARTBEAT_RESOURCES = Resources("20m", "48Mi", "96Mi")
"""The init container's and sidecars' sizes, each request above its measured peak RSS
with TLS to the control plane (benchmarks/pod_footprint.py, README "Measured"):
verifier 49.6 MiB, key agent 38.7 MiB (8 concurrent readers; a thread per
connection, so more readers raise it), heartbeat 37.7 MiB; limits twice the request."""


@dataclass(frozen=True)
class Toleration:
    key: str
    value: str
    effect: str

    def as_k8s(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


DEFAULT_NODE_SELECTOR: Mapping[str, str] = {NODE_POOL_LABEL: NODE_POOL_VALUE}
DEFAULT_TOLERATIONS = (Toleration(NODE_POOL_LABEL, NODE_POOL_VALUE, "NoSchedule"),)


@dataclass(frozen=True)
class Egress:
    """Where the run's pods may connect, besides each other and the cluster's DNS.

    CIDRs, because a NetworkPolicy matches addresses, not host names: resolve the
    control plane's, the storage account's and the API server's names (or use private
    endpoints with fixed addresses) when rendering. docs/kubernetes.md says how.
    """

    control_plane: tuple[str, ...] = ()
    control_plane_port: int = HTTPS
    storage: tuple[str, ...] = ()
    servicebus: tuple[str, ...] = ()
    api_server: tuple[str, ...] = ()
    api_server_port: int = HTTPS
    dns_namespace: str = DNS_NAMESPACE
    dns_labels: Mapping[str, str] = field(default_factory=lambda: dict(DNS_LABELS))


@dataclass(frozen=True)
class ManifestOptions:
    """Everything the operator chooses; the spec decides the rest."""

    image_repo: str
    spark_version: str
    spark_conf: Mapping[str, str]
    """The effective spark-conf/ (spark-defaults.conf with kubernetes.conf on top): Spark
    on Kubernetes mounts its own generated configuration over the image's, so these
    settings travel in the SparkApplication's sparkConf."""
    egress: Egress = field(default_factory=Egress)
    namespace: str = DEFAULT_NAMESPACE
    executors: int = 2
    driver_cores: int = 1
    driver_memory: str = "2g"
    executor_cores: int = 1
    executor_memory: str = "2g"
    local_dir_size: str = "20Gi"
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    runtime_class: str = DEFAULT_RUNTIME_CLASS
    node_selector: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_NODE_SELECTOR))
    tolerations: tuple[Toleration, ...] = DEFAULT_TOLERATIONS
    token_secret: str = DEFAULT_TOKEN_SECRET
    storage_secret: str = DEFAULT_STORAGE_SECRET
    servicebus_secret: str = DEFAULT_SERVICEBUS_SECRET
    heartbeat_transport: Literal["http", "servicebus"] = "http"
    heartbeat_interval: float = 10.0
    cc_policies: Mapping[PodRole, str] = field(default_factory=dict)
    """Pod isolation: each role's Confidential Containers policy (base64 Rego, as
    ``az confcom katapolicygen`` writes it into the annotation)."""

    @property
    def image_repository(self) -> str:
        return image_repository(self.image_repo)


# --- parsing what the command line gives ---------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SPARK_MEMORY = re.compile(r"^[0-9]+[kmgt]?$")
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")


def image_repository(text: str) -> str:
    """A repository with no tag or digest: the spec's digest is the only version named."""
    if not _REPOSITORY.fullmatch(text):
        raise ConfigError(
            f"--image-repo {text!r} is not a repository such as registry.example.com/name "
            "(no tag, no digest: the image is named by the digest the signed spec pins)"
        )
    return text


def dns_label(text: str, what: str) -> str:
    if not _DNS_LABEL.fullmatch(text):
        raise ConfigError(f"{what} {text!r} is not a DNS label (lower case, 63 characters)")
    return text


def dns_subdomain(text: str, what: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(text):
        raise ConfigError(f"{what} {text!r} is not a DNS subdomain name")
    return text


def quantity(text: str, what: str) -> str:
    if not _QUANTITY.fullmatch(text):
        raise ConfigError(f"{what} {text!r} is not a Kubernetes quantity such as 20Gi")
    return text


def spark_memory(text: str, what: str) -> str:
    if not _SPARK_MEMORY.fullmatch(text):
        raise ConfigError(f"{what} {text!r} is not a Spark memory size such as 2g")
    return text


def key_values(pairs: Iterable[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs naming labels (node selectors, the DNS pods' labels)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _LABEL_NAME.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise ConfigError(f"{what} {pair!r} is not KEY=VALUE with a label's key and value")
        result[key] = value
    return result


def tolerations(specs: Iterable[str]) -> tuple[Toleration, ...]:
    """``KEY=VALUE:EFFECT`` (the form of ``az aks nodepool add --node-taints``)."""
    found = []
    for text in specs:
        pair, sep, effect = text.rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(
                f"--toleration {text!r} is not KEY=VALUE:EFFECT "
                "(EFFECT NoSchedule, PreferNoSchedule or NoExecute)"
            )
        ((key, value),) = key_values([pair], "--toleration").items()
        found.append(Toleration(key, value, effect))
    return tuple(found)


def cidrs(texts: Iterable[str], what: str) -> tuple[str, ...]:
    """Networks in their one spelling; a host name is refused with what to do instead."""
    found: list[str] = []
    for text in texts:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise ConfigError(
                f"{what} {text!r} is not a CIDR such as 203.0.113.10/32: a NetworkPolicy "
                "matches addresses, not host names (resolve it, or use a private endpoint)"
            ) from None
        if net.prefixlen == 0:
            raise ConfigError(f"{what} {text!r} is every address: egress would not be closed")
        if str(net) not in found:
            found.append(str(net))
    return tuple(found)


def port(value: int, what: str) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{what} {value} is not a TCP port")
    return value


def role_values(pairs: Iterable[str], what: str) -> dict[PodRole, str]:
    """``ROLE=VALUE`` for the pod roles driver and executor, each at most once."""
    result: dict[PodRole, str] = {}
    for pair in pairs:
        role, sep, value = pair.partition("=")
        if not sep or not value:
            raise ConfigError(f"{what} {pair!r} is not ROLE=VALUE")
        matched = [r for r in POD_ROLES if r == role]
        if not matched:
            raise ConfigError(f"{what} names role {role!r}: the roles are driver and executor")
        if matched[0] in result:
            raise ConfigError(f"{what} names {role} twice")
        result[matched[0]] = value
    return result


def policy_document(text: str, role: str) -> bytes:
    """The Rego policy a base64 annotation value carries (katapolicygen's form)."""
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"the {role} pod policy is not base64 (give the value of the "
            f"io.katacontainers.config.agent.policy annotation that katapolicygen writes)"
        ) from None
    if not raw:
        raise ConfigError(f"the {role} pod policy is empty")
    return raw
