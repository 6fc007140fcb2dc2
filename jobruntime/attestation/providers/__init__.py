"""How a pod obtains SEV-SNP evidence: configfs-tsm, /dev/sev-guest, the Azure vTPM.

``detect()`` picks the hardware interface present; each provider's ``collect``
turns 64 bytes of REPORT_DATA into an ``Evidence`` a verifier checks with
``AttestationVerifier`` and then ``check_binding``. ``EmulatedProvider`` serves
local work and tests and is never detected. None of the hardware paths can run
on a development machine; they are tested with constructed fixtures.

Names load on first use: a pod imports the provider it uses, never the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobruntime.attestation.providers.azure_vtpm import (
        AzureVtpmProvider,
        HclReport,
        fetch_vcek_chain,
    )
    from jobruntime.attestation.providers.base import EvidenceProvider, detect
    from jobruntime.attestation.providers.certificate_table import (
        build_certificate_table,
        certificates_from_table,
        parse_certificate_table,
    )
    from jobruntime.attestation.providers.configfs_tsm import ConfigfsIo, ConfigfsTsmProvider
    from jobruntime.attestation.providers.emulated import EmulatedProvider, load_tee, save_tee
    from jobruntime.attestation.providers.errors import CollectError, EvidenceError, NoTeeError
    from jobruntime.attestation.providers.evidence import (
        Evidence,
        EvidenceKind,
        check_binding,
        expected_report_data,
    )
    from jobruntime.attestation.providers.sev_guest import SevGuestProvider

_WHERE = {
    "AzureVtpmProvider": "azure_vtpm",
    "CollectError": "errors",
    "ConfigfsIo": "configfs_tsm",
    "ConfigfsTsmProvider": "configfs_tsm",
    "EmulatedProvider": "emulated",
    "Evidence": "evidence",
    "EvidenceError": "errors",
    "EvidenceKind": "evidence",
    "EvidenceProvider": "base",
    "HclReport": "azure_vtpm",
    "NoTeeError": "errors",
    "SevGuestProvider": "sev_guest",
    "build_certificate_table": "certificate_table",
    "certificates_from_table": "certificate_table",
    "check_binding": "evidence",
    "detect": "base",
    "expected_report_data": "evidence",
    "fetch_vcek_chain": "azure_vtpm",
    "load_tee": "emulated",
    "parse_certificate_table": "certificate_table",
    "save_tee": "emulated",
}

__all__ = [
    "AzureVtpmProvider",
    "CollectError",
    "ConfigfsIo",
    "ConfigfsTsmProvider",
    "EmulatedProvider",
    "Evidence",
    "EvidenceError",
    "EvidenceKind",
    "EvidenceProvider",
    "HclReport",
    "NoTeeError",
    "SevGuestProvider",
    "build_certificate_table",
    "certificates_from_table",
    "check_binding",
    "detect",
    "expected_report_data",
    "fetch_vcek_chain",
    "load_tee",
    "parse_certificate_table",
    "save_tee",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
