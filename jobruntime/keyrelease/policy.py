"""Per-key release rules, applied to a report the control plane already appraised."""

from __future__ import annotations

from jobruntime.attestation.errors import EmulatedRootError
from jobruntime.attestation.policy import (
    AllOf,
    AllowedMeasurements,
    MinimumGuestSvn,
    MinimumTcb,
    NoDebug,
)
from jobruntime.attestation.product import Product
from jobruntime.attestation.report import AttestationReport
from jobruntime.attestation.tcb import TcbParts
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy
from jobruntime.errors import AttestationError


class EvidenceKindError(AttestationError):
    """The key's release policy does not accept this kind of evidence."""

    code = "attestation.evidence_kind"


def check_release(
    policy: ReleasePolicy, kind: EvidenceKind, report: AttestationReport, product: Product
) -> None:
    # 1. The kind of evidence: emulated evidence only where the owner allowed it.
    if kind not in policy.evidence_kinds:
        if kind is EvidenceKind.EMULATED:
            raise EmulatedRootError("emulated evidence under a production release policy")
        raise EvidenceKindError(f"{kind.value} evidence is not allowed for this key")
    # 2. What the report says: no debug, a listed measurement, TCB and SVN floors.
    floor = {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0} | dict(policy.minimum_tcb)
    if product.has_fmc:
        floor.setdefault("fmc", 0)
    AllOf(
        NoDebug(),
        AllowedMeasurements(bytes.fromhex(m) for m in policy.measurements),
        MinimumTcb(TcbParts(**floor), product),
        MinimumGuestSvn(policy.minimum_guest_svn),
    ).verify(report)
