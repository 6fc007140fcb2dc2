"""AMD SEV-SNP attestation evidence: parse, verify, and emulate.

``AttestationReport.parse`` reads the ABI format; ``AttestationVerifier`` checks
signature, AMD chain, TCB binding and a ``Policy``; ``EmulatedTee`` produces the
same evidence for local work under a chain that is refused unless allowed.
"""

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
