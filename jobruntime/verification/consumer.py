"""How the pod's other containers start: anchors from the image, then the re-verified bundle.

The driver calls :func:`load_pod_bundle` before using anything of the bundle (the key
agent and the heartbeat sidecar call its pydantic-free twin,
``sidecar.load_sidecar_bundle``): the trust root is the one pinned in their own image
(or, in development mode, the one their flags name), and the spec's signature,
approvals and validity are checked again.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import utcnow
from jobruntime.verification.bundle import PodBundle, load_bundle
from jobruntime.verification.pinned import Anchors, anchors


def load_pod_bundle(
    component: str,
    bundle_dir: Path,
    *,
    trust_root: str | os.PathLike[str] | None = None,
    control_plane_url: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    module: str | os.PathLike[str] | None = None,
    needs_control_plane: bool = True,
) -> tuple[Anchors, PodBundle]:
    pinned = anchors(
        component,
        trust_root=trust_root,
        control_plane_url=control_plane_url,
        ca_bundle=ca_bundle,
        module=module,
        needs_control_plane=needs_control_plane,
    )
    bundle = load_bundle(bundle_dir, TrustRoot.load(pinned.trust_root), now=utcnow())
    return pinned, bundle
