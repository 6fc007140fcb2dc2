"""The driver's and executors' pod templates: everything a pod needs is in its template.

With ``spec.driver.template`` / ``spec.executor.template`` set (and ``sparkVersion``),
the Spark Operator skips its mutating webhook, so a SparkApplication's
``initContainers``, ``sidecars``, ``securityContext`` and the like would be ignored
without a word: they are all here. Spark builds each pod from its template and fills
in the Spark container (named ``spark-kubernetes-driver`` / ``-executor``): its
arguments, Spark's own environment, the configuration volume.

The driver pod: ``job-verifier`` (init; verifies, attests and claims the run, writes
the bundle), then the key agent and the heartbeat as native sidecars (init containers
with ``restartPolicy: Always``; the agent's startup probe holds everything after it
until its socket exists), then the driver. An executor pod: the verifier in executor
mode and its own key agent, so each executor is attested and gets its own keys.

Every container runs as uid 185 with no capabilities, no privilege escalation, the
runtime's default seccomp profile and a read-only root file system; the only writable
paths are the pod's volumes. Only the driver gets a service account token (it creates
the executors). The verifier's token reaches only the three containers that talk to
the control plane, from a Secret by name; the job's Spark containers never see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobruntime.k8s import layout
from jobruntime.k8s.options import (
    HEARTBEAT_RESOURCES,
    KEY_AGENT_RESOURCES,
    VERIFIER_RESOURCES,
    ManifestOptions,
    Resources,
)
from jobruntime.spec.models import PodRole

Doc = dict[str, Any]

TOKEN_MODE = 0o440
"""The token file: readable by the pod's group (fsGroup 185), never by others."""
MEMORY_VOLUME_LIMIT = "16Mi"
"""The bundle (at most a few hundred KiB), the Spark secret, the socket, the driver's
outcome and a cancel order; it counts against the pod's memory."""
SCRATCH_LIMIT = "1Gi"
PROBE_PERIOD_SECONDS = 1
PROBE_FAILURES = 120
"""The key agent attests and fetches the Spark secret before it listens: two minutes."""


@dataclass(frozen=True)
class PodPlan:
    """What every container of the run's pods is built from."""

    run_id: str
    image_digest: str
    isolation: str
    labels: Mapping[str, str]
    spark_secret_file: str
    uses_storage: bool
    options: ManifestOptions

    @property
    def image(self) -> str:
        """By digest only: the image the owners approved, byte for byte."""
        return f"{self.options.image_repository}@{self.image_digest}"


def container_security() -> Doc:
    return {
        "runAsNonRoot": True,
        "runAsUser": layout.UID,
        "runAsGroup": layout.UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> Doc:
    return {
        "runAsNonRoot": True,
        "runAsUser": layout.UID,
        "runAsGroup": layout.UID,
        "fsGroup": layout.UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(r: Resources) -> Doc:
    return {
        "requests": {"cpu": r.cpu, "memory": r.memory},
        "limits": {"memory": r.memory_limit},
    }


def mount(name: str, path: str, *, read_only: bool = False) -> Doc:
    doc: Doc = {"name": name, "mountPath": path}
    if read_only:
        doc["readOnly"] = True
    return doc


def secret_env(name: str, secret: str, key: str) -> Doc:
    """A variable from a Secret by name: the value never appears in the manifest."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _base(plan: PodPlan, name: str) -> Doc:
    return {
        "name": name,
        "image": plan.image,
        "imagePullPolicy": "IfNotPresent",
    }


def _finish(container: Doc, mounts: list[Doc]) -> Doc:
    container["volumeMounts"] = mounts
    container["securityContext"] = container_security()
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def _control_plane_mounts() -> list[Doc]:
    return [
        mount(layout.RUN_VOLUME, str(layout.RUN_DIR)),
        mount(layout.TOKEN_VOLUME, layout.TOKEN_DIR, read_only=True),
        mount(layout.TMP_VOLUME, layout.TMP_DIR),
    ]


def verifier(plan: PodPlan, role: PodRole) -> Doc:
    """Init container: checks 1-10 (executor mode joins instead of claiming)."""
    c = _base(plan, layout.VERIFIER)
    c["command"] = [layout.VERIFIER_BIN]
    c["args"] = [
        "--run-id",
        plan.run_id,
        "--image-digest",
        plan.image_digest,
        "--token-file",
        layout.TOKEN_FILE,
        "--output-dir",
        str(layout.RUN_DIR),
        "--mode",
        role,
    ]
    c["resources"] = resources(VERIFIER_RESOURCES)
    return _finish(c, _control_plane_mounts())


def key_agent(plan: PodPlan) -> Doc:
    """Native sidecar: up (socket bound) before the containers after it start."""
    c = _base(plan, layout.KEY_AGENT)
    c["restartPolicy"] = "Always"
    c["command"] = [layout.KEY_AGENT_BIN]
    c["args"] = [
        "--socket",
        layout.SOCKET,
        "--bundle-dir",
        str(layout.RUN_DIR),
        "--token-file",
        layout.TOKEN_FILE,
        "--spark-secret-file",
        plan.spark_secret_file,
    ]
    c["resources"] = resources(KEY_AGENT_RESOURCES)
    c["startupProbe"] = {
        "exec": {"command": [layout.TEST_BIN, "-S", layout.SOCKET]},
        "periodSeconds": PROBE_PERIOD_SECONDS,
        "timeoutSeconds": 1,
        "failureThreshold": PROBE_FAILURES,
    }
    return _finish(c, _control_plane_mounts())


def heartbeat(plan: PodPlan) -> Doc:
    """Native sidecar of the driver pod: signed heartbeats, cancel orders, the outcome."""
    opts = plan.options
    c = _base(plan, layout.HEARTBEAT)
    c["restartPolicy"] = "Always"
    c["command"] = [layout.HEARTBEAT_BIN]
    c["args"] = [
        "--bundle-dir",
        str(layout.RUN_DIR),
        "--token-file",
        layout.TOKEN_FILE,
        "--interval",
        f"{opts.heartbeat_interval:g}",
        "--transport",
        opts.heartbeat_transport,
        # A native sidecar that exits while the pod runs is restarted: after the final
        # heartbeat it waits for the kubelet's SIGTERM.
        "--wait-for-stop",
    ]
    if opts.heartbeat_transport == "servicebus":
        c["env"] = [
            secret_env(layout.SERVICEBUS_ENV, opts.servicebus_secret, layout.CONNECTION_KEY)
        ]
    c["resources"] = resources(HEARTBEAT_RESOURCES)
    return _finish(c, _control_plane_mounts())


def spark_container(plan: PodPlan, role: PodRole) -> Doc:
    """The container Spark fills in (arguments, Spark's variables, its configuration).

    No token: the driver holds none (its outcome reaches the control plane through the
    heartbeat sidecar), and the job module must never see one.
    """
    name = layout.DRIVER_CONTAINER if role == "driver" else layout.EXECUTOR_CONTAINER
    c = _base(plan, name)
    env: list[Doc] = []
    if role == "driver":
        env.append({"name": layout.BUNDLE_ENV, "value": str(layout.RUN_DIR)})
    env.append({"name": layout.SOCKET_ENV, "value": layout.SOCKET})
    if plan.uses_storage:
        env.append(
            secret_env(layout.STORAGE_ENV, plan.options.storage_secret, layout.CONNECTION_KEY)
        )
    c["env"] = env
    return _finish(
        c,
        [
            mount(layout.RUN_VOLUME, str(layout.RUN_DIR)),
            mount(layout.TMP_VOLUME, layout.TMP_DIR),
            mount(layout.WORK_VOLUME, layout.WORK_DIR),
            mount(layout.LOCAL_VOLUME, layout.LOCAL_DIR),
        ],
    )


def volumes(plan: PodPlan) -> list[Doc]:
    return [
        {
            "name": layout.RUN_VOLUME,
            "emptyDir": {"medium": "Memory", "sizeLimit": MEMORY_VOLUME_LIMIT},
        },
        {
            "name": layout.TOKEN_VOLUME,
            "projected": {
                "defaultMode": TOKEN_MODE,
                "sources": [
                    {
                        "secret": {
                            "name": plan.options.token_secret,
                            "items": [{"key": layout.TOKEN_KEY, "path": layout.TOKEN_KEY}],
                        }
                    }
                ],
            },
        },
        {"name": layout.TMP_VOLUME, "emptyDir": {"sizeLimit": SCRATCH_LIMIT}},
        {"name": layout.WORK_VOLUME, "emptyDir": {"sizeLimit": SCRATCH_LIMIT}},
        {"name": layout.LOCAL_VOLUME, "emptyDir": {"sizeLimit": plan.options.local_dir_size}},
    ]


def placement(plan: PodPlan) -> Doc:
    """Pod isolation: the Confidential Containers runtime. Node isolation: the pool."""
    opts = plan.options
    if plan.isolation == "pod":
        return {"runtimeClassName": opts.runtime_class}
    terms = [
        {"key": key, "operator": "In", "values": [value]}
        for key, value in sorted(opts.node_selector.items())
    ]
    doc: Doc = {"nodeSelector": dict(sorted(opts.node_selector.items()))}
    if terms:
        doc["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": terms}]
                }
            }
        }
    if opts.tolerations:
        doc["tolerations"] = [t.as_k8s() for t in opts.tolerations]
    return doc


def template(plan: PodPlan, role: PodRole) -> Doc:
    """One pod template: metadata (labels, the pod policy) and the whole pod spec."""
    labels = {**plan.labels, layout.ROLE_LABEL: role}
    metadata: Doc = {"labels": labels}
    policy = plan.options.cc_policies.get(role)
    if plan.isolation == "pod" and policy is not None:
        metadata["annotations"] = {layout.CC_POLICY_ANNOTATION: "".join(policy.split())}
    init = [verifier(plan, role), key_agent(plan)]
    if role == "driver":
        init.append(heartbeat(plan))
    spec: Doc = {
        **placement(plan),
        "restartPolicy": "Never",
        "automountServiceAccountToken": role == "driver",
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "initContainers": init,
        "containers": [spark_container(plan, role)],
        "volumes": volumes(plan),
    }
    if role == "driver":
        spec["serviceAccountName"] = plan.options.service_account
    return {"metadata": metadata, "spec": spec}
