"""AMD SEV-SNP attestation evidence: parse, verify, and emulate.

``AttestationReport.parse`` reads the ABI format; ``AttestationVerifier`` checks
signature, AMD chain, TCB binding and a ``Policy``; ``EmulatedTee`` produces the
same evidence for local work under a chain that is refused unless allowed.

Names load on first use: a pod that collects evidence needs the report and the
certificates, not the verifier's policies nor the emulated TEE.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobruntime.attestation.certs import (
        AmdCertificate,
        EndorsementExtensions,
        ProductChain,
        certificates_pem,
        load_certificates,
    )
    from jobruntime.attestation.emulated import EmulatedTee, sign_report
    from jobruntime.attestation.policy import (
        AllOf,
        AllowedMeasurements,
        AllowedVmpl,
        HostDataEquals,
        MinimumGuestSvn,
        MinimumTcb,
        NoDebug,
        Policy,
        ReportDataEquals,
        standard_policy,
    )
    from jobruntime.attestation.product import Product
    from jobruntime.attestation.report import (
        REPORT_SIZE,
        AttestationReport,
        GuestPolicy,
        PlatformInfo,
        SignerInfo,
        SigningKey,
        parse_report,
    )
    from jobruntime.attestation.tcb import TcbParts, TcbVersion
    from jobruntime.attestation.verify import (
        AttestationVerifier,
        VerifiedReport,
        verify_report_signature,
    )

_WHERE = {
    "AllOf": "policy",
    "AllowedMeasurements": "policy",
    "AllowedVmpl": "policy",
    "AmdCertificate": "certs",
    "AttestationReport": "report",
    "AttestationVerifier": "verify",
    "EmulatedTee": "emulated",
    "EndorsementExtensions": "certs",
    "GuestPolicy": "report",
    "HostDataEquals": "policy",
    "MinimumGuestSvn": "policy",
    "MinimumTcb": "policy",
    "NoDebug": "policy",
    "PlatformInfo": "report",
    "Policy": "policy",
    "Product": "product",
    "ProductChain": "certs",
    "REPORT_SIZE": "report",
    "ReportDataEquals": "policy",
    "SignerInfo": "report",
    "SigningKey": "report",
    "TcbParts": "tcb",
    "TcbVersion": "tcb",
    "VerifiedReport": "verify",
    "certificates_pem": "certs",
    "load_certificates": "certs",
    "parse_report": "report",
    "sign_report": "emulated",
    "standard_policy": "policy",
    "verify_report_signature": "verify",
}

__all__ = [
    "REPORT_SIZE",
    "AllOf",
    "AllowedMeasurements",
    "AllowedVmpl",
    "AmdCertificate",
    "AttestationReport",
    "AttestationVerifier",
    "EmulatedTee",
    "EndorsementExtensions",
    "GuestPolicy",
    "HostDataEquals",
    "MinimumGuestSvn",
    "MinimumTcb",
    "NoDebug",
    "PlatformInfo",
    "Policy",
    "Product",
    "ProductChain",
    "ReportDataEquals",
    "SignerInfo",
    "SigningKey",
    "TcbParts",
    "TcbVersion",
    "VerifiedReport",
    "certificates_pem",
    "load_certificates",
    "parse_report",
    "sign_report",
    "standard_policy",
    "verify_report_signature",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
