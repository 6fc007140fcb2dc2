"""``jobruntime manifest``: a verified run rendered as a SparkApplication and what goes beside it.

Input is a :class:`VerifiedSpec` only (the control plane's signature checked, the run id
the one asked for), so nothing in the manifest comes from an unsigned spec. Output is
deterministic (no time, no random name): the same run and options give the same bytes,
which is what the golden manifests test.

Before anything is rendered, what would make the pods fail is refused here instead:
pod isolation without HOST_DATA for both roles, a pod policy that does not produce the
spec's HOST_DATA, a spark-conf/ that ``jobruntime conf check`` would refuse on
Kubernetes, or a Spark secret file the key agent could not write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from jobruntime.errors import ConfigError
from jobruntime.job.failure import IMAGE_LOGGING_OPTION, leaky_spark_settings
from jobruntime.k8s import layout, network
from jobruntime.k8s.confcom import check_policies, require_host_data
from jobruntime.k8s.errors import ManifestError, SecretPathError
from jobruntime.k8s.options import ManifestOptions, dns_label
from jobruntime.k8s.pods import PodPlan, template
from jobruntime.sparkconf.check import (
    DRIVER_SECRET_FILE,
    EXECUTOR_SECRET_FILE,
    SECURE_SPARK_CONF,
    SparkSettings,
)
from jobruntime.spec.models import POD_ROLES, JobRunSpec, PodRole
from jobruntime.verification.signed import VerifiedSpec

Doc = dict[str, Any]

API_VERSION = "sparkoperator.k8s.io/v1beta2"
IN_CLUSTER_MASTER = "k8s://https://kubernetes.default.svc"
"""What the configuration is checked under: any ``k8s://`` master."""
NODE_WARNING = (
    "node isolation: the node VM is the TEE, and its evidence says nothing about which pod "
    "asked. It protects the data from the cloud host, the hypervisor, storage and the "
    "network, but NOT from whoever controls this Kubernetes cluster: its admins can change "
    "or exec into these pods and get the run's keys. Use pod isolation to keep them out."
)


@dataclass(frozen=True)
class Rendered:
    """The documents, the comment block that precedes them, and warnings for stderr."""

    documents: list[Doc]
    header: list[str]
    warnings: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        return to_yaml(self.documents, self.header)


def to_yaml(documents: Sequence[Mapping[str, Any]], header: Sequence[str] = ()) -> str:
    """Multi-document YAML without a YAML library: JSON is YAML, one document per ``---``.

    The image carries no YAML library, and JSON's quoting leaves no value that YAML
    could read as another type (``no``, ``1e3``, ``0755``).
    """
    lines = [f"# {line}".rstrip() for text in header for line in text.splitlines() or [""]]
    for doc in documents:
        lines.append("---")
        lines.append(json.dumps(doc, indent=2, ensure_ascii=True))
    return "\n".join(lines) + "\n"


def uses_storage(spec: JobRunSpec) -> bool:
    return any(d.uri.startswith("az://") for d in (*spec.inputs, *spec.outputs))


def local_datasets(spec: JobRunSpec) -> list[str]:
    return [d.name for d in (*spec.inputs, *spec.outputs) if d.uri.startswith("file://")]


def checked_spark_conf(conf: Mapping[str, str]) -> dict[str, str]:
    """spark-conf/ as Spark on Kubernetes runs it, refused as ``conf check`` refuses it.

    Spark mounts its own configuration over the image's /opt/spark/conf, so the quiet
    logging rules (no exception text: it can quote data) are named explicitly: every
    driver and executor JVM loads the image's copy of log4j2.properties.
    """
    SECURE_SPARK_CONF.verify(SparkSettings({**conf, "spark.master": IN_CLUSTER_MASTER}))
    logging = IMAGE_LOGGING_OPTION
    merged = dict(conf)
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        merged[key] = " ".join(filter(None, (merged.get(key, "").strip(), logging)))
    # The driver refuses to run under settings that write exception text out: render
    # nothing it would refuse.
    leaks = leaky_spark_settings(merged)
    if leaks:
        raise ManifestError(f"the driver would refuse these Spark settings: {', '.join(leaks)}")
    return dict(sorted(merged.items()))


def spark_secret_file(conf: Mapping[str, str]) -> str:
    """Where spark-conf/ has Spark read the run's secret, if the key agent can write it there.

    The agent writes it only into a directory of its own uid with mode 0700 on a memory
    file system; the memory volume's root is the kubelet's (world-writable, root-owned),
    so the file must lie in a subdirectory of it, which the agent creates.
    """
    driver, executor = conf.get(DRIVER_SECRET_FILE), conf.get(EXECUTOR_SECRET_FILE)
    if not driver or driver.strip() != (executor or "").strip():
        raise SecretPathError(
            f"{DRIVER_SECRET_FILE} and {EXECUTOR_SECRET_FILE} must name the same file"
        )
    path = PurePosixPath(driver.strip())
    lexical = ".." not in path.parts and "." not in path.parts
    if not lexical or layout.RUN_DIR not in path.parents or path.parent == layout.RUN_DIR:
        raise SecretPathError(
            f"the Spark secret file {path} must be in a subdirectory of the memory volume "
            f"{layout.RUN_DIR} (the agent writes it only into a 0700 directory of its own; "
            "the volume's root belongs to the kubelet)"
        )
    return str(path)


def run_labels(spec: JobRunSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "confidential-spark-runtime",
        "app.kubernetes.io/managed-by": "jobruntime",
        layout.RUN_LABEL: spec.run_id,
        layout.JOB_LABEL: spec.job_id,
    }


def plan_for(verified: VerifiedSpec, options: ManifestOptions) -> PodPlan:
    """The pods' common inputs, after every refusal that does not depend on HOST_DATA."""
    spec = verified.spec
    try:
        dns_label(spec.run_id, "the run id, as the SparkApplication's name,")
    except ConfigError as exc:
        raise ManifestError(exc.message) from None
    for value, flag in (
        (options.executors, "--executors"),
        (options.driver_cores, "--driver-cores"),
        (options.executor_cores, "--executor-cores"),
    ):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1")
    if spec.workload.isolation == "node" and options.cc_policies:
        raise ConfigError("pod policies (--cc-policy) apply to pod isolation only")
    checked_spark_conf(options.spark_conf)
    return PodPlan(
        run_id=spec.run_id,
        image_digest=spec.image_digest,
        isolation=spec.workload.isolation,
        labels=run_labels(spec),
        spark_secret_file=spark_secret_file(options.spark_conf),
        uses_storage=uses_storage(spec),
        options=options,
    )


def spark_application(verified: VerifiedSpec, plan: PodPlan) -> Doc:
    spec, opts = verified.spec, plan.options
    return {
        "apiVersion": API_VERSION,
        "kind": "SparkApplication",
        "metadata": {
            "name": spec.run_id,
            "namespace": opts.namespace,
            "labels": dict(plan.labels),
            "annotations": {
                layout.SPEC_DIGEST_ANNOTATION: verified.digest,
                layout.ISOLATION_ANNOTATION: spec.workload.isolation,
            },
        },
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "image": plan.image,
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": layout.DRIVER_APPLICATION,
            "sparkVersion": opts.spark_version,
            "restartPolicy": {"type": "Never"},
            "sparkConf": checked_spark_conf(opts.spark_conf),
            "driver": {
                "cores": opts.driver_cores,
                "memory": opts.driver_memory,
                "serviceAccount": opts.service_account,
                "template": template(plan, "driver"),
            },
            "executor": {
                "instances": opts.executors,
                "cores": opts.executor_cores,
                "memory": opts.executor_memory,
                "template": template(plan, "executor"),
            },
        },
    }


def _warnings(spec: JobRunSpec, opts: ManifestOptions) -> list[str]:
    warnings = []
    if spec.workload.isolation == "node":
        warnings.append(NODE_WARNING)
    elif set(opts.cc_policies) != set(POD_ROLES):
        missing = " and ".join(r for r in POD_ROLES if r not in opts.cc_policies)
        warnings.append(
            f"no pod policy (--cc-policy) for {missing}: those pods run under the cluster's "
            "default policy, whose HOST_DATA is not the spec's, and get no key"
        )
    local = local_datasets(spec)
    if local:
        warnings.append(
            f"datasets {', '.join(local)} are file:// paths: every pod needs them mounted "
            "at that path, and this manifest mounts no data volume"
        )
    return warnings


def _secrets_header(plan: PodPlan) -> list[str]:
    opts, ns = plan.options, plan.options.namespace
    lines = [
        f"Create these Secrets in namespace {ns} before applying; their values never appear "
        "in this file:",
        f"  {opts.token_secret}, key {layout.TOKEN_KEY}: the control plane's verifier-role "
        "bearer token (read by the verifier, the key agent and the heartbeat only)",
        f"    kubectl -n {ns} create secret generic {opts.token_secret} "
        f"--from-file={layout.TOKEN_KEY}=./verifier.token",
    ]
    if plan.uses_storage:
        lines += [
            f"  {opts.storage_secret}, key {layout.CONNECTION_KEY}: the storage account's "
            f"connection string (${layout.STORAGE_ENV} of the driver and executors)",
            f"    kubectl -n {ns} create secret generic {opts.storage_secret} "
            f"--from-file={layout.CONNECTION_KEY}=./storage.conn",
        ]
    if opts.heartbeat_transport == "servicebus":
        lines += [
            f"  {opts.servicebus_secret}, key {layout.CONNECTION_KEY}: the Service Bus "
            f"connection string (${layout.SERVICEBUS_ENV} of the heartbeat sidecar)",
            f"    kubectl -n {ns} create secret generic {opts.servicebus_secret} "
            f"--from-file={layout.CONNECTION_KEY}=./servicebus.conn",
        ]
    return lines


def _isolation_header(spec: JobRunSpec, opts: ManifestOptions) -> list[str]:
    if spec.workload.isolation == "pod":
        return [
            f"Isolation: pod (Confidential Containers, runtimeClassName {opts.runtime_class}): "
            "each pod is its own SEV-SNP guest; keys go only to pods whose HOST_DATA is "
            f"the spec's (driver {spec.workload.host_data['driver']}, executor "
            f"{spec.workload.host_data['executor']})."
        ]
    return [f"WARNING: {NODE_WARNING}"]


def render(verified: VerifiedSpec, options: ManifestOptions) -> Rendered:
    """The SparkApplication and its two NetworkPolicies, or the refusal."""
    spec = verified.spec
    plan = plan_for(verified, options)
    if spec.workload.isolation == "pod":
        require_host_data(spec)
        check_policies(spec, options.cc_policies)
    app = spark_application(verified, plan)
    policies = network.policies(
        spec.run_id,
        options.namespace,
        plan.labels,
        options.egress,
        uses_storage=plan.uses_storage,
        servicebus=options.heartbeat_transport == "servicebus",
    )
    docs = [app, *policies]
    header = [
        f"Rendered by `jobruntime manifest {spec.run_id}` from its signed spec "
        f"({verified.digest}), verified against the trust root; job {spec.job_id}.",
        *_isolation_header(spec, options),
        "Documents: " + ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in docs) + ".",
        *_secrets_header(plan),
        f"Then: kubectl apply -f THIS_FILE; kubectl -n {options.namespace} get "
        f"sparkapplication {spec.run_id}; jobruntime runs status {spec.run_id}",
    ]
    return Rendered(docs, header, _warnings(spec, options))


def render_policy_input(
    verified: VerifiedSpec, options: ManifestOptions, role: PodRole
) -> Rendered:
    """One role's pod as a plain ``v1`` Pod, for ``az confcom katapolicygen -y``.

    Rendered before HOST_DATA exists (that is what it is for), never to be applied:
    the operator generates the role's policy from it, names the policy's digest in the
    spec (``--set-workload``), and the owners approve that.
    """
    spec = verified.spec
    if spec.workload.isolation != "pod":
        raise ManifestError(f"{spec.run_id} runs in node isolation: it has no pod policy")
    plan = plan_for(verified, replace(options, cc_policies={}))
    t = template(plan, role)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{spec.run_id}-{role}-policy-input",
            "namespace": options.namespace,
            **t["metadata"],
        },
        "spec": t["spec"],
    }
    header = [
        f"The {role} pod of run {spec.run_id} ({verified.digest}), for "
        "az confcom katapolicygen: NOT for kubectl apply.",
        f"  az confcom katapolicygen -y THIS_FILE --print-policy > {role}.policy",
        "then, with both roles' policies and before any owner approves (docs/kubernetes.md):",
        f"  jobruntime manifest {spec.run_id} --cc-policy driver=driver.policy "
        "--cc-policy executor=executor.policy --set-workload",
    ]
    return Rendered([pod], header, [])
