"""How a pod obtains SEV-SNP evidence: configfs-tsm, /dev/sev-guest, the Azure vTPM.

``detect()`` picks the hardware interface present; each provider's ``collect``
turns 64 bytes of REPORT_DATA into an ``Evidence`` a verifier checks with
``AttestationVerifier`` and then ``check_binding``. ``EmulatedProvider`` serves
local work and tests and is never detected. None of the hardware paths can run
on a development machine; they are tested with constructed fixtures.
"""

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
