"""Decide whether to believe an ATTESTATION_REPORT, in four numbered steps.

1. The report is signed (ECDSA P-384, SHA-384, bytes 0x000-0x29F) by the key in
   the VCEK or VLEK certificate supplied with it.
2. That certificate is issued by a pinned ASK (ASVK for VLEK) of the expected
   product, whose ARK is pinned too; emulated roots only when explicitly allowed.
3. The certificate's TCB extensions equal the report's REPORTED_TCB and its hwID
   equals CHIP_ID (unless the chip id is masked, or the key is a VLEK).
4. The caller's ``Policy`` accepts the report (debug, measurement, TCB floor, ...).

The trusted ARK/ASK chains are always passed in; nothing is fetched here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from jobruntime.attestation.certs import (
    AmdCertificate,
    EndorsementExtensions,
    ProductChain,
    load_certificates,
)
from jobruntime.attestation.errors import (
    CertificateError,
    ChainError,
    ChipIdMismatchError,
    EmulatedRootError,
    ProductMismatchError,
    ReportSignatureError,
    TcbMismatchError,
)
from jobruntime.attestation.policy import Policy
from jobruntime.attestation.product import Product
from jobruntime.attestation.report import AttestationReport, SigningKey
from jobruntime.attestation.tcb import TcbParts


@dataclass(frozen=True)
class VerifiedReport:
    """A report that passed every step, with what verification established."""

    report: AttestationReport
    product: Product
    signing_key: SigningKey
    reported_tcb: TcbParts
    emulated: bool


def verify_report_signature(report: AttestationReport, key: CertificatePublicKeyTypes) -> None:
    """Step 1 on its own: ``key`` (P-384) signed bytes 0x000-0x29F of ``report``."""
    if report.signer_info.signing_key is SigningKey.NONE:
        raise ReportSignatureError("report is not signed (SIGNING_KEY is NONE)")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise CertificateError("endorsement key is not an ECDSA P-384 key")
    try:
        key.verify(report.signature_der(), report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise ReportSignatureError("report signature does not verify under the VCEK/VLEK") from None


def _endorsement(value: AmdCertificate | bytes | str) -> AmdCertificate:
    if isinstance(value, AmdCertificate):
        return value
    certificates = load_certificates(value)
    if len(certificates) != 1:
        raise CertificateError("expected exactly one VCEK or VLEK certificate")
    return certificates[0]


@dataclass(frozen=True, init=False)
class AttestationVerifier:
    """Pinned chains, the expected product and a policy: verifies evidence against them."""

    chains: tuple[ProductChain, ...]
    product: Product
    policy: Policy
    allow_emulated: bool

    def __init__(
        self,
        chains: Iterable[ProductChain],
        product: Product,
        policy: Policy,
        *,
        allow_emulated: bool = False,
    ) -> None:
        pinned = tuple(chains)
        emulated = [c.ark.subject_cn for c in pinned if c.emulated]
        if emulated and not allow_emulated:
            raise EmulatedRootError(f"emulated root {emulated[0]} pinned without allow_emulated")
        object.__setattr__(self, "chains", pinned)
        object.__setattr__(self, "product", product)
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "allow_emulated", allow_emulated)

    def verify(
        self,
        report: AttestationReport | bytes,
        endorsement: AmdCertificate | bytes | str,
        *,
        at: datetime | None = None,
    ) -> VerifiedReport:
        """Verify ``report`` with its VCEK/VLEK certificate (DER, PEM or loaded)."""
        if isinstance(report, bytes):
            report = AttestationReport.parse(report)
        cert = _endorsement(endorsement)
        when = at or datetime.now(UTC)
        if when.tzinfo is None:
            raise ValueError("verification time must be timezone-aware")

        # 1. The report signature verifies under the certificate's P-384 key.
        verify_report_signature(report, cert.public_key())

        # 2. The certificate chains to a pinned ASK/ARK of the expected product.
        chain = self._issuing_chain(cert)
        signing_key = report.signer_info.signing_key
        if signing_key is not chain.endorses:
            raise ChainError(
                f"report names {signing_key.name} but {chain.ask.subject_cn} issued the key"
            )
        stale = [c.subject_cn for c in (cert, chain.ask, chain.ark) if not c.valid_at(when)]
        if stale:
            raise ChainError(f"certificate {stale[0]} is not valid at {when.isoformat()}")
        extensions = EndorsementExtensions.of(cert, chain.product)
        if extensions.product is not chain.product:
            raise ProductMismatchError(
                f"{cert.subject_cn} productName {extensions.product_name!r} is not {chain.product}"
            )
        if report.version >= 3 and report.product is not self.product:
            raise ProductMismatchError(
                f"report CPUID family {report.cpuid_fam_id:#x} model {report.cpuid_mod_id:#x}"
                f" is not {self.product}"
            )

        # 3. The certificate's TCB and chip id are the report's.
        reported = report.reported_tcb.parts(self.product)
        if reported != extensions.tcb:
            raise TcbMismatchError(
                f"reported TCB ({reported}) != certificate TCB ({extensions.tcb})"
            )
        if signing_key is SigningKey.VCEK:
            _check_chip_id(report, extensions)

        # 4. The policy accepts what the now-authentic report says.
        self.policy.verify(report)
        return VerifiedReport(report, self.product, signing_key, reported, chain.emulated)

    def _issuing_chain(self, cert: AmdCertificate) -> ProductChain:
        if cert.is_emulated and not self.allow_emulated:
            raise EmulatedRootError(f"{cert.subject_cn} is from the emulated TEE")
        issuers = [c for c in self.chains if cert.is_issued_by(c.ask)]
        if not issuers:
            issuer = cert.parsed.issuer.rfc4514_string()
            raise ChainError(f"{cert.subject_cn} is not signed by a pinned ASK (issuer {issuer})")
        chain = issuers[0]
        if chain.product is not self.product:
            raise ProductMismatchError(
                f"{cert.subject_cn} is endorsed for {chain.product}, not {self.product}"
            )
        return chain


def _check_chip_id(report: AttestationReport, extensions: EndorsementExtensions) -> None:
    if extensions.hwid is None:
        raise CertificateError("VCEK certificate has no hwID extension")
    if report.signer_info.mask_chip_key:
        return  # the host masked CHIP_ID (all zeros); nothing to compare
    # Turin chip ids are 8 bytes, zero-extended to 64 in the report.
    size = len(extensions.hwid)
    if report.chip_id[:size] != extensions.hwid or any(report.chip_id[size:]):
        raise ChipIdMismatchError(
            f"report CHIP_ID {report.chip_id[:8].hex()}… is not the VCEK's hwID"
        )
