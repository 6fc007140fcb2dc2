"""Pod isolation's HOST_DATA: the spec names it per role, the pod's policy produces it.

In Confidential Containers the host launches each pod's guest with HOST_DATA set to
the SHA-256 of the pod's agent policy (the Rego document the
``io.katacontainers.config.agent.policy`` annotation carries, as AKS measures it), and
the KMS releases keys only to evidence whose HOST_DATA is the value the signed spec
names for the pod's role. So a pod-isolation manifest is rendered only when the spec
names both roles, and a policy given for a role must hash to that role's value:
otherwise the pods would start and every key release would be refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from jobruntime.k8s.errors import HostDataMissingError, PolicyMismatchError
from jobruntime.k8s.options import policy_document
from jobruntime.spec.models import POD_ROLES, JobRunSpec, PodRole


def host_data_of(policy_b64: str, role: str) -> str:
    """The HOST_DATA a pod launched with this policy annotation reports (hex)."""
    return hashlib.sha256(policy_document(policy_b64, role)).hexdigest()


def require_host_data(spec: JobRunSpec) -> Mapping[PodRole, str]:
    """Pod isolation's HOST_DATA for every role, or the refusal naming what is missing."""
    missing = [role for role in POD_ROLES if role not in spec.workload.host_data]
    if missing:
        raise HostDataMissingError(
            f"{spec.run_id} runs in pod isolation but its signed spec names no HOST_DATA for "
            f"{' and '.join(missing)}: set it before the owners approve (jobruntime manifest "
            f"{spec.run_id} --cc-policy ROLE=FILE --set-workload; docs/kubernetes.md)"
        )
    return spec.workload.host_data


def check_policies(spec: JobRunSpec, policies: Mapping[PodRole, str]) -> None:
    """Each given policy must produce the HOST_DATA the spec names for its role."""
    expected = require_host_data(spec)
    for role, policy in sorted(policies.items()):
        got = host_data_of(policy, role)
        if got != expected[role]:
            raise PolicyMismatchError(
                f"the {role} pod policy's digest is {got}, but the signed spec of "
                f"{spec.run_id} names HOST_DATA {expected[role]} for {role} pods: "
                "those pods would get no key"
            )


def workload_host_data(
    host_data: Mapping[PodRole, str], policies: Mapping[PodRole, str]
) -> dict[PodRole, str]:
    """What ``--set-workload`` names: ``--host-data`` values, or the policies' digests.

    Both roles are needed, and where both forms name a role they must agree.
    """
    result: dict[PodRole, str] = {}
    for role in POD_ROLES:
        given = host_data.get(role)
        derived = host_data_of(policies[role], role) if role in policies else None
        if given is not None and derived is not None and given != derived:
            raise PolicyMismatchError(
                f"--host-data {role}={given} is not the digest of the {role} policy ({derived})"
            )
        value = given or derived
        if value is None:
            raise HostDataMissingError(
                f"--set-workload needs HOST_DATA for {role} (--host-data {role}=HEX or "
                f"--cc-policy {role}=FILE)"
            )
        result[role] = value
    return result
