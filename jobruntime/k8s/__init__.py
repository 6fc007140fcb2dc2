"""Kubernetes manifests for a verified run: ``jobruntime manifest RUN_ID``.

``render(verified, options)`` gives the Kubeflow Spark Operator's SparkApplication
(``sparkoperator.k8s.io/v1beta2``, pod templates only) and the NetworkPolicies that
close the run's egress; ``verified_run`` fetches and verifies the signed run first, and
``name_workload`` sets pod isolation's HOST_DATA before owners approve. The guide is
docs/kubernetes.md.
"""

from jobruntime.k8s.errors import (
    HostDataMissingError,
    ManifestError,
    PolicyMismatchError,
    SecretPathError,
)
from jobruntime.k8s.options import Egress, ManifestOptions, Toleration
from jobruntime.k8s.render import Rendered, render, render_policy_input, to_yaml
from jobruntime.k8s.source import name_workload, verified_run

__all__ = [
    "Egress",
    "HostDataMissingError",
    "ManifestError",
    "ManifestOptions",
    "PolicyMismatchError",
    "Rendered",
    "SecretPathError",
    "Toleration",
    "name_workload",
    "render",
    "render_policy_input",
    "to_yaml",
    "verified_run",
]
