"""What every evidence source offers, and how a pod finds the one its machine has.

``detect`` tries the hardware interfaces in order of preference: configfs-tsm
(the kernel's vendor-neutral ABI), the older ``/dev/sev-guest`` ioctls, and the
Azure vTPM (Azure hides the other two). It never falls back to the emulated TEE:
a pod that finds no hardware must fail, not attest with keys anyone can hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from jobruntime.attestation.providers.azure_vtpm import (
    TPM_DEVICE,
    AzureVtpmProvider,
    Runner,
    run_tool,
)
from jobruntime.attestation.providers.configfs_tsm import (
    TSM_REPORT_DIR,
    ConfigfsIo,
    ConfigfsTsmProvider,
)
from jobruntime.attestation.providers.errors import NoTeeError
from jobruntime.attestation.providers.evidence import Evidence, EvidenceKind
from jobruntime.attestation.providers.sev_guest import SEV_GUEST_DEVICE, SevGuestProvider


class EvidenceProvider(Protocol):
    """A source of evidence over caller-chosen REPORT_DATA (exactly 64 bytes, else ValueError)."""

    @property
    def kind(self) -> EvidenceKind: ...

    def collect(self, report_data: bytes) -> Evidence: ...


class _Candidate(EvidenceProvider, Protocol):
    def unavailable(self) -> str | None:
        """None when usable here, otherwise why not (for the ``no_tee`` message)."""


def detect(
    *,
    tsm_report_dir: Path = TSM_REPORT_DIR,
    configfs: ConfigfsIo | None = None,
    sev_guest_device: Path = SEV_GUEST_DEVICE,
    tpm_device: Path = TPM_DEVICE,
    tpm_runner: Runner = run_tool,
) -> EvidenceProvider:
    """The first hardware provider usable here; ``NoTeeError`` naming what was tried."""
    candidates: list[_Candidate] = [
        ConfigfsTsmProvider(tsm_report_dir, io=configfs),
        SevGuestProvider(sev_guest_device),
        AzureVtpmProvider(tpm_device, runner=tpm_runner),
    ]
    reasons = []
    for candidate in candidates:
        reason = candidate.unavailable()
        if reason is None:
            return candidate
        reasons.append(reason)
    raise NoTeeError(f"no SEV-SNP interface found: {'; '.join(reasons)}")
