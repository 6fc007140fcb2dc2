"""An emulated SEV-SNP TEE for local work and tests.

It issues its own ARK -> ASK -> VCEK chain (RSA-PSS SHA-384 like AMD's, with the
KDS TCB and hwID extensions and, like the KDS, a zero VCEK serial) and produces
reports in the exact ABI format signed by that VCEK. Every certificate names
itself O="Emulated TEE", CN="ARK-Emulated-<product>" and so on, so it can never
pass for AMD: ``AttestationVerifier`` refuses it unless ``allow_emulated=True``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from jobruntime.attestation import der
from jobruntime.attestation.certs import (
    AMD_PSS,
    EMULATED_ORGANIZATION,
    OID_BL_SPL,
    OID_FMC_SPL,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_RESERVED_SPLS,
    OID_SNP_SPL,
    OID_STRUCT_VERSION,
    OID_TEE_SPL,
    OID_UCODE_SPL,
    AmdCertificate,
    ProductChain,
)
from jobruntime.attestation.product import Product
from jobruntime.attestation.report import (
    ECDSA_P384_SHA384,
    AttestationReport,
    GuestPolicy,
    PlatformInfo,
    SignerInfo,
)
from jobruntime.attestation.tcb import TcbParts, TcbVersion

DEFAULT_GUEST_POLICY = 0x30000  # ABI 0.0, SMT allowed, reserved bit 17, no debug

# CPUID family, model, stepping each product reports (v3+).
_CPUID = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x00),
}
_DEFAULT_TCB = {
    Product.MILAN: TcbParts(bootloader=4, tee=0, snp=24, microcode=219),
    Product.GENOA: TcbParts(bootloader=10, tee=0, snp=23, microcode=84),
    Product.TURIN: TcbParts(bootloader=1, tee=1, snp=5, microcode=60, fmc=1),
}


def sign_report(report: AttestationReport, key: ec.EllipticCurvePrivateKey) -> AttestationReport:
    """``report`` with R and S set to ``key``'s signature over bytes 0x000-0x29F."""
    r, s = decode_dss_signature(key.sign(report.signed_bytes, ec.ECDSA(hashes.SHA384())))
    return dataclasses.replace(report, signature_r=r, signature_s=s)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Not AMD hardware"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, EMULATED_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: str,
    issuer: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    signer: rsa.RSAPrivateKey,
    now: datetime,
    years: int,
    extensions: Sequence[x509.ExtensionType],
) -> AmdCertificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365 * years))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(signer, hashes.SHA384(), rsa_padding=AMD_PSS)
    return AmdCertificate.from_der(cert.public_bytes(serialization.Encoding.DER))


def _with_serial(cert: AmdCertificate, serial: int, signer: rsa.RSAPrivateKey) -> AmdCertificate:
    """Re-issue ``cert`` with any serial, including ones RFC 5280 forbids (as the KDS does)."""
    parts = der.split_certificate(der.replace_serial(cert.der, serial))
    signature = signer.sign(parts.tbs, AMD_PSS, hashes.SHA384())
    return AmdCertificate.from_der(
        der.assemble_certificate(parts.tbs, parts.signature_algorithm, signature)
    )


def _vcek_extensions(product: Product, tcb: TcbParts, chip_id: bytes) -> list[x509.ExtensionType]:
    def integer(value: int) -> bytes:
        return der.encode_tlv(der.INTEGER, der.integer_content(value))

    values = {
        OID_STRUCT_VERSION: integer(1 if product.has_fmc else 0),
        OID_PRODUCT_NAME: der.encode_tlv(der.IA5_STRING, f"{product}-B0".encode()),
        OID_BL_SPL: integer(tcb.bootloader),
        OID_TEE_SPL: integer(tcb.tee),
        OID_SNP_SPL: integer(tcb.snp),
        **{oid: integer(0) for oid in OID_RESERVED_SPLS},  # the KDS includes them, zero
        OID_UCODE_SPL: integer(tcb.microcode),
        OID_HWID: chip_id[:8] if product.has_fmc else chip_id,
    }
    if tcb.fmc is not None:
        values[OID_FMC_SPL] = integer(tcb.fmc)
    return [x509.UnrecognizedExtension(oid, value) for oid, value in values.items()]


@dataclass(frozen=True, eq=False)
class EmulatedTee:
    """One emulated chip: its ARK/ASK chain, its VCEK and the key behind it."""

    product: Product
    chain: ProductChain
    vcek: AmdCertificate
    tcb: TcbParts
    chip_id: bytes
    vcek_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(
        cls,
        product: Product = Product.GENOA,
        *,
        tcb: TcbParts | None = None,
        chip_id: bytes | None = None,
        rsa_key_size: int = 2048,
        vcek_serial: int = 0,
        now: datetime | None = None,
    ) -> EmulatedTee:
        """A new chip. AMD's ARK/ASK are RSA-4096; 2048 keeps tests fast."""
        now = now or datetime.now(UTC)
        tcb = tcb or _DEFAULT_TCB[product]
        if chip_id is None:
            chip_id = os.urandom(8) + bytes(56) if product.has_fmc else os.urandom(64)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        ark_cn, ask_cn = f"ARK-Emulated-{product}", f"SEV-Emulated-{product}"
        ca = [x509.BasicConstraints(ca=True, path_length=None)]
        ark = _issue(ark_cn, ark_cn, ark_key.public_key(), ark_key, now, 25, ca)
        ask = _issue(ask_cn, ark_cn, ask_key.public_key(), ark_key, now, 25, ca)
        vcek = _issue(
            "SEV-VCEK-Emulated",
            ask_cn,
            vcek_key.public_key(),
            ask_key,
            now,
            7,
            _vcek_extensions(product, tcb, chip_id),
        )
        vcek = _with_serial(vcek, vcek_serial, ask_key)
        return cls(product, ProductChain(ark=ark, ask=ask), vcek, tcb, chip_id, vcek_key)

    def report(
        self,
        *,
        report_data: bytes = bytes(64),
        measurement: bytes = bytes(48),
        host_data: bytes = bytes(32),
        policy: int = DEFAULT_GUEST_POLICY,
        guest_svn: int = 0,
        vmpl: int = 0,
        version: int = 3,
        reported_tcb: TcbParts | None = None,
        mask_chip_id: bool = False,
    ) -> bytes:
        """A signed ATTESTATION_REPORT (0x4A0 bytes) as this chip would produce it."""
        current = TcbVersion.from_parts(self.tcb, self.product)
        family, model, stepping = _CPUID[self.product] if version >= 3 else (None, None, None)
        mitigations = 0 if version >= 5 else None
        unsigned = AttestationReport(
            version=version,
            guest_svn=guest_svn,
            policy=GuestPolicy(policy),
            family_id=bytes(16),
            image_id=bytes(16),
            vmpl=vmpl,
            signature_algo=ECDSA_P384_SHA384,
            current_tcb=current,
            platform_info=PlatformInfo(0x1),
            signer_info=SignerInfo(0b10 if mask_chip_id else 0),
            report_data=report_data,
            measurement=measurement,
            host_data=host_data,
            id_key_digest=bytes(48),
            author_key_digest=bytes(48),
            report_id=os.urandom(32),
            report_id_ma=b"\xff" * 32,
            reported_tcb=TcbVersion.from_parts(reported_tcb or self.tcb, self.product),
            cpuid_fam_id=family,
            cpuid_mod_id=model,
            cpuid_step=stepping,
            chip_id=bytes(64) if mask_chip_id else self.chip_id,
            committed_tcb=current,
            current_build=0,
            current_minor=55,
            current_major=1,
            committed_build=0,
            committed_minor=55,
            committed_major=1,
            launch_tcb=current,
            launch_mit_vector=mitigations,
            current_mit_vector=mitigations,
            signature_r=0,
            signature_s=0,
        )
        return sign_report(unsigned, self.vcek_key).serialize()
