"""The run a manifest is rendered from: fetched from the control plane, then verified.

The same verification an owner's preview runs before approving (``jobruntime
approve``): the DSSE envelope, the control plane's signature over the exact bytes
against the pinned trust root, only then the strict schema, and the run id asked for.
Approvals and the validity window are not required here: a manifest is rendered (and
pod isolation's HOST_DATA set) before the owners approve, and every pod's verifier
checks both before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.k8s.errors import ManifestError
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import PodRole, Workload, utcnow
from jobruntime.verification.signed import VerifiedSpec, verify_response


def verified_run(client: ControlPlaneClient, run_id: str, trust_root: TrustRoot) -> VerifiedSpec:
    """The run's spec, only if the control plane signed it and it is this run's."""
    return verify_response(
        client.signed_run_bytes(run_id), trust_root, now=utcnow(), run_id=run_id, review=True
    )


def name_workload(
    client: ControlPlaneClient,
    run_id: str,
    trust_root: TrustRoot,
    host_data: Mapping[PodRole, str],
) -> VerifiedSpec:
    """Name each pod role's HOST_DATA in the run's spec (before any approval).

    The control plane re-signs the spec; the new one is fetched and verified, and it
    must name exactly these values, so that what the owners approve next is checked
    to be what the operator measured.
    """
    current = verified_run(client, run_id, trust_root)
    if current.spec.workload.isolation != "pod":
        raise ManifestError(f"{run_id} runs in node isolation: there is no HOST_DATA to name")
    workload = Workload(isolation="pod", host_data=dict(host_data))
    client.set_workload(run_id, workload)
    updated = verified_run(client, run_id, trust_root)
    if updated.spec.workload != workload:
        raise ManifestError(
            f"the control plane's re-signed spec of {run_id} does not name the HOST_DATA given"
        )
    return updated
