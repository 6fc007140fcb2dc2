"""AMD's certificates: tolerant loading, the ARK/ASK chain, and the VCEK extensions.

AMD signs ARK, ASK/ASVK and VCEK/VLEK certificates with RSASSA-PSS (SHA-384,
MGF1 SHA-384, 48-byte salt). Signatures are always checked over the original
TBS bytes, so a certificate whose serial had to be re-encoded to be parsed (see
``der.py``) is still verified exactly as AMD signed it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from jobruntime.attestation import der
from jobruntime.attestation.der import CertificateParts
from jobruntime.attestation.errors import CertificateError, ChainError
from jobruntime.attestation.product import Product, product_from_name
from jobruntime.attestation.report import SigningKey
from jobruntime.attestation.tcb import TcbParts

AMD_ORGANIZATION = "Advanced Micro Devices"
EMULATED_ORGANIZATION = "Emulated TEE"

# VCEK/VLEK extensions, AMD KDS specification ("VCEK Certificate Extensions").
_AMD = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier(f"{_AMD}.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{_AMD}.2")
OID_BL_SPL = x509.ObjectIdentifier(f"{_AMD}.3.1")
OID_TEE_SPL = x509.ObjectIdentifier(f"{_AMD}.3.2")
OID_SNP_SPL = x509.ObjectIdentifier(f"{_AMD}.3.3")
OID_RESERVED_SPLS = tuple(x509.ObjectIdentifier(f"{_AMD}.3.{n}") for n in (4, 5, 6, 7))
OID_UCODE_SPL = x509.ObjectIdentifier(f"{_AMD}.3.8")
OID_FMC_SPL = x509.ObjectIdentifier(f"{_AMD}.3.9")  # Turin only
OID_HWID = x509.ObjectIdentifier(f"{_AMD}.4")  # VCEK: the chip id
OID_CSP_ID = x509.ObjectIdentifier(f"{_AMD}.5")  # VLEK: the cloud provider

AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")
# ARK-Milan, SEV-Genoa (ASK), SEV-VLEK-Turin (ASVK); the emulator adds "Emulated-".
_CA_NAME = re.compile(r"(ARK|SEV|SEV-VLEK)-(Emulated-)?(Milan|Genoa|Turin)")


@dataclass(frozen=True, eq=False)
class AmdCertificate:
    """A certificate as AMD issued it, parsed even when its serial breaks RFC 5280."""

    der: bytes
    parsed: x509.Certificate  # serial replaced by 1 when the original is not RFC 5280
    parts: CertificateParts

    @classmethod
    def from_der(cls, data: bytes) -> AmdCertificate:
        parts = der.split_certificate(data)
        # Re-encode only what a strict parser refuses; the signature check below uses `parts`.
        parseable = data if parts.serial_is_rfc5280 else der.replace_serial(data, 1)
        try:
            parsed = x509.load_der_x509_certificate(parseable)
            # cryptography decodes these on first use: a malformed name or key must fail
            # here, typed, not later in whichever check reads it first.
            _ = (parsed.subject, parsed.issuer, parsed.signature_algorithm_oid)
            _ = (parsed.not_valid_before_utc, parsed.not_valid_after_utc, parsed.public_key())
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            raise CertificateError(f"certificate cannot be parsed: {exc}") from None
        return cls(data, parsed, parts)

    @property
    def serial_number(self) -> int:
        return self.parts.serial_number

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER, for pinning an ARK by value."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def subject_cn(self) -> str:
        return _attribute(self.parsed.subject, NameOID.COMMON_NAME)

    @property
    def organization(self) -> str:
        return _attribute(self.parsed.subject, NameOID.ORGANIZATION_NAME)

    @property
    def is_emulated(self) -> bool:
        """Issued by or to the emulated TEE (its names say so)."""
        return EMULATED_ORGANIZATION in (
            self.organization,
            _attribute(self.parsed.issuer, NameOID.ORGANIZATION_NAME),
        )

    def public_key(self) -> CertificatePublicKeyTypes:
        return self.parsed.public_key()

    def is_issued_by(self, issuer: AmdCertificate) -> bool:
        """Names chain and ``issuer``'s RSA key made this RSA-PSS SHA-384 signature."""
        key = issuer.public_key()
        if self.parsed.issuer != issuer.parsed.subject or not isinstance(key, rsa.RSAPublicKey):
            return False
        if self.parsed.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
            return False
        try:
            key.verify(self.parts.signature, self.parts.tbs, AMD_PSS, hashes.SHA384())
        except InvalidSignature:
            return False
        return True

    def valid_at(self, at: datetime) -> bool:
        return self.parsed.not_valid_before_utc <= at <= self.parsed.not_valid_after_utc

    def to_pem(self) -> str:
        """PEM of the original bytes (never of the re-encoded copy)."""
        body = base64.b64encode(self.der).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "\n".join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----\n"])


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def load_certificates(data: bytes | str) -> list[AmdCertificate]:
    """Every certificate in PEM text, or the one certificate in DER bytes."""
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" not in raw:
        return [AmdCertificate.from_der(raw)]
    blocks = _PEM.findall(raw)
    if not blocks:
        raise CertificateError("no PEM CERTIFICATE block found")
    try:
        return [AmdCertificate.from_der(base64.b64decode(block)) for block in blocks]
    except ValueError:  # binascii.Error
        raise CertificateError("PEM CERTIFICATE block is not base64") from None


def certificates_pem(certificates: Iterable[AmdCertificate]) -> str:
    return "".join(cert.to_pem() for cert in certificates)


@dataclass(frozen=True)
class _CaName:
    role: str  # "ARK", "SEV" (ASK) or "SEV-VLEK" (ASVK)
    product: Product
    emulated: bool


def _ca_name(cert: AmdCertificate) -> _CaName:
    match = _CA_NAME.fullmatch(cert.subject_cn)
    expected_org = EMULATED_ORGANIZATION if match and match[2] else AMD_ORGANIZATION
    if match is None or cert.organization != expected_org:
        raise ChainError(f"{cert.subject_cn!r} ({cert.organization!r}) is not an AMD ARK/ASK")
    return _CaName(match[1], Product(match[3]), bool(match[2]))


@dataclass(frozen=True)
class ProductChain:
    """An ARK and the ASK (or ASVK) it signed: the pinned anchor for one product.

    Building one checks that the ARK is self-signed, the ASK is signed by it and
    both name the same product, so an instance is always a consistent chain.
    """

    ark: AmdCertificate
    ask: AmdCertificate

    def __post_init__(self) -> None:
        ark, ask = _ca_name(self.ark), _ca_name(self.ask)
        if ark.role != "ARK" or ask.role == "ARK":
            raise ChainError(f"expected an ARK and an ASK, got {self.ark.subject_cn!r}")
        if (ark.product, ark.emulated) != (ask.product, ask.emulated):
            raise ChainError(f"{self.ask.subject_cn!r} and {self.ark.subject_cn!r} disagree")
        if not self.ark.is_issued_by(self.ark):
            raise ChainError(f"{self.ark.subject_cn} is not validly self-signed")
        if not self.ask.is_issued_by(self.ark):
            raise ChainError(f"{self.ask.subject_cn} is not signed by {self.ark.subject_cn}")

    @classmethod
    def from_pem(cls, data: bytes | str) -> ProductChain:
        """AMD's ``ask_ark_<product>.pem`` (ASK or ASVK, then ARK; any order accepted)."""
        certificates = load_certificates(data)
        roots = [c for c in certificates if c.parsed.subject == c.parsed.issuer]
        others = [c for c in certificates if c not in roots]
        if len(roots) != 1 or len(others) != 1:
            raise ChainError("a product chain is exactly one ARK and one ASK")
        return cls(ark=roots[0], ask=others[0])

    def to_pem(self) -> str:
        return certificates_pem([self.ask, self.ark])

    @cached_property
    def _name(self) -> _CaName:
        return _ca_name(self.ask)

    @property
    def product(self) -> Product:
        return self._name.product

    @property
    def emulated(self) -> bool:
        return self._name.emulated

    @property
    def endorses(self) -> SigningKey:
        """ASKs endorse VCEKs, ASVKs endorse VLEKs."""
        return SigningKey.VLEK if self._name.role == "SEV-VLEK" else SigningKey.VCEK


@dataclass(frozen=True)
class EndorsementExtensions:
    """What a VCEK or VLEK certificate binds its key to."""

    product_name: str
    tcb: TcbParts
    hwid: bytes | None  # VCEK: the CHIP_ID (8 bytes on Turin, 64 before)
    csp_id: str | None  # VLEK: the cloud provider it was issued to

    @classmethod
    def of(cls, cert: AmdCertificate, product: Product) -> EndorsementExtensions:
        try:
            values = {
                ext.oid: ext.value.value
                for ext in cert.parsed.extensions
                if isinstance(ext.value, x509.UnrecognizedExtension)
            }
        except ValueError as exc:
            raise CertificateError(f"{cert.subject_cn} extensions: {exc}") from None

        def spl(oid: x509.ObjectIdentifier) -> int:
            if oid not in values:
                raise CertificateError(f"{cert.subject_cn} lacks TCB extension {oid.dotted_string}")
            level = der.decode_integer(values[oid])
            if not 0 <= level <= 0xFF:
                raise CertificateError(f"{cert.subject_cn} TCB extension {oid.dotted_string}")
            return level

        if OID_PRODUCT_NAME not in values:
            raise CertificateError(f"{cert.subject_cn} lacks the productName extension")
        tcb = TcbParts(
            bootloader=spl(OID_BL_SPL),
            tee=spl(OID_TEE_SPL),
            snp=spl(OID_SNP_SPL),
            microcode=spl(OID_UCODE_SPL),
            fmc=spl(OID_FMC_SPL) if product.has_fmc else None,
        )
        hwid = values.get(OID_HWID)
        csp = values.get(OID_CSP_ID)
        return cls(
            product_name=der.decode_ia5string(values[OID_PRODUCT_NAME]),
            tcb=tcb,
            hwid=None if hwid is None else _hwid(hwid),
            csp_id=None if csp is None else der.decode_ia5string(csp),
        )

    @property
    def product(self) -> Product | None:
        return product_from_name(self.product_name)


def _hwid(value: bytes) -> bytes:
    # The KDS puts the raw chip id in the extension; accept an OCTET STRING wrapper too.
    if len(value) in (8, 64):
        return value
    inner = der.read_single(value, der.OCTET_STRING)
    if len(inner) not in (8, 64):
        raise CertificateError(f"hwID extension is {len(inner)} bytes")
    return inner
