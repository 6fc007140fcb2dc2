"""The AMD SEV-SNP ATTESTATION_REPORT, byte-exact, versions 2 to 5.

Layout per the SEV-SNP firmware ABI specification (rev 1.55 to 1.57, table
"ATTESTATION_REPORT Structure"). Every offset lives in ``_LAYOUT`` so parsing and
serializing cannot disagree, and every byte the table does not name must be zero,
so ``serialize(parse(b)) == b`` for every accepted ``b``. Parsing checks the form
only; ``verify.py`` decides whether to believe it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jobruntime.attestation.errors import (
    ReportMalformedError,
    UnsupportedReportVersionError,
    UnsupportedSignatureAlgorithmError,
)
from jobruntime.attestation.product import Product, product_from_cpuid
from jobruntime.attestation.tcb import TcbVersion

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0  # the signature covers bytes 0x000-0x29F
SUPPORTED_VERSIONS = range(2, 6)
ECDSA_P384_SHA384 = 1


class SigningKey(IntEnum):
    """SIGNING_KEY (bits 4:2 at 0x48): which key signed the report."""

    VCEK = 0
    VLEK = 1
    NONE = 7


class _HasRaw(Protocol):
    @property
    def raw(self) -> int: ...


class _Flag:
    """Read-only boolean view of one bit of the owner's ``raw``."""

    def __init__(self, bit: int) -> None:
        self.bit = bit

    def __get__(self, obj: _HasRaw, objtype: type | None = None) -> bool:
        return bool(obj.raw >> self.bit & 1)


class _Bits:
    """Read-only integer view of ``width`` bits of the owner's ``raw``."""

    def __init__(self, low: int, width: int) -> None:
        self.low, self.mask = low, (1 << width) - 1

    def __get__(self, obj: _HasRaw, objtype: type | None = None) -> int:
        return obj.raw >> self.low & self.mask


@dataclass(frozen=True)
class GuestPolicy:
    """POLICY (0x08): what the guest owner allowed at launch; the raw value is kept."""

    raw: int

    abi_minor = _Bits(0, 8)
    abi_major = _Bits(8, 8)
    smt = _Flag(16)
    reserved_one = _Flag(17)  # must be 1 at launch; the firmware enforces it
    migrate_ma = _Flag(18)
    debug = _Flag(19)
    single_socket = _Flag(20)
    cxl_allow = _Flag(21)
    mem_aes_256_xts = _Flag(22)
    rapl_dis = _Flag(23)
    ciphertext_hiding = _Flag(24)
    page_swap_disable = _Flag(25)


@dataclass(frozen=True)
class PlatformInfo:
    """PLATFORM_INFO (0x40): platform state when the report was made; informative."""

    raw: int

    smt_enabled = _Flag(0)
    tsme_enabled = _Flag(1)
    ecc_enabled = _Flag(2)
    rapl_disabled = _Flag(3)
    ciphertext_hiding_enabled = _Flag(4)
    alias_check_complete = _Flag(5)
    tio_enabled = _Flag(7)


@dataclass(frozen=True)
class SignerInfo:
    """The 32 bits at 0x48: AUTHOR_KEY_EN, MASK_CHIP_KEY and SIGNING_KEY."""

    raw: int

    author_key_en = _Flag(0)
    mask_chip_key = _Flag(1)

    def __post_init__(self) -> None:
        if self.raw >> 5:
            raise ReportMalformedError(f"reserved signer-info bits set: {self.raw:#x}")
        if self.raw >> 2 not in {key.value for key in SigningKey}:
            raise ReportMalformedError(f"reserved SIGNING_KEY value {self.raw >> 2}")

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.raw >> 2)


_WRAPPERS = (GuestPolicy, PlatformInfo, SignerInfo, TcbVersion)
_Kind = (
    type[int]
    | type[bytes]
    | type[GuestPolicy]
    | type[PlatformInfo]
    | type[SignerInfo]
    | type[TcbVersion]
)


@dataclass(frozen=True)
class _Slot:
    """One field of the report; ``name=None`` marks bytes that must be zero."""

    offset: int
    size: int
    name: str | None = None
    kind: _Kind = int
    since: int = 2  # first report version defining the field; zero before it

    @property
    def end(self) -> int:
        return self.offset + self.size

    def decode(self, data: bytes) -> object:
        raw = data[self.offset : self.end]
        if self.kind is bytes:
            return raw
        value = int.from_bytes(raw, "little")
        return value if self.kind is int else self.kind(value)

    def encode(self, value: object) -> bytes:
        if isinstance(value, bytes):
            return value
        number = value.raw if isinstance(value, _WRAPPERS) else value
        assert isinstance(number, int)
        return number.to_bytes(self.size, "little")


# fmt: off
_LAYOUT: tuple[_Slot, ...] = (
    _Slot(0x000, 4, "version"),
    _Slot(0x004, 4, "guest_svn"),
    _Slot(0x008, 8, "policy", GuestPolicy),
    _Slot(0x010, 16, "family_id", bytes),
    _Slot(0x020, 16, "image_id", bytes),
    _Slot(0x030, 4, "vmpl"),
    _Slot(0x034, 4, "signature_algo"),
    _Slot(0x038, 8, "current_tcb", TcbVersion),
    _Slot(0x040, 8, "platform_info", PlatformInfo),
    _Slot(0x048, 4, "signer_info", SignerInfo),
    _Slot(0x04C, 4),
    _Slot(0x050, 64, "report_data", bytes),
    _Slot(0x090, 48, "measurement", bytes),
    _Slot(0x0C0, 32, "host_data", bytes),
    _Slot(0x0E0, 48, "id_key_digest", bytes),
    _Slot(0x110, 48, "author_key_digest", bytes),
    _Slot(0x140, 32, "report_id", bytes),
    _Slot(0x160, 32, "report_id_ma", bytes),
    _Slot(0x180, 8, "reported_tcb", TcbVersion),
    _Slot(0x188, 1, "cpuid_fam_id", since=3),
    _Slot(0x189, 1, "cpuid_mod_id", since=3),
    _Slot(0x18A, 1, "cpuid_step", since=3),
    _Slot(0x18B, 21),
    _Slot(0x1A0, 64, "chip_id", bytes),
    _Slot(0x1E0, 8, "committed_tcb", TcbVersion),
    _Slot(0x1E8, 1, "current_build"),
    _Slot(0x1E9, 1, "current_minor"),
    _Slot(0x1EA, 1, "current_major"),
    _Slot(0x1EB, 1),
    _Slot(0x1EC, 1, "committed_build"),
    _Slot(0x1ED, 1, "committed_minor"),
    _Slot(0x1EE, 1, "committed_major"),
    _Slot(0x1EF, 1),
    _Slot(0x1F0, 8, "launch_tcb", TcbVersion),
    _Slot(0x1F8, 8, "launch_mit_vector", since=5),
    _Slot(0x200, 8, "current_mit_vector", since=5),
    _Slot(0x208, 0x98),
    # SIGNATURE: R and S are 72-byte little-endian fields of which P-384 uses 48.
    _Slot(0x2A0, 48, "signature_r"),
    _Slot(0x2D0, 24),
    _Slot(0x2E8, 48, "signature_s"),
    _Slot(0x318, 24),
    _Slot(0x330, 0x170),
)
# fmt: on

_FIELDS = tuple(slot for slot in _LAYOUT if slot.name is not None)


def _check_layout() -> None:
    position = 0
    for slot in _LAYOUT:
        assert slot.offset == position, f"layout gap or overlap at {slot.offset:#x}"
        position = slot.end
    assert position == REPORT_SIZE


_check_layout()


def _check_version(version: int) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedReportVersionError(f"report version {version} is not supported (2-5)")


@dataclass(frozen=True, kw_only=True)
class AttestationReport:
    """One ATTESTATION_REPORT; fields are named and ordered as in the ABI table."""

    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    signer_info: SignerInfo
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int

    def __post_init__(self) -> None:
        _check_version(self.version)
        if self.signature_algo != ECDSA_P384_SHA384:
            raise UnsupportedSignatureAlgorithmError(
                f"signature algorithm {self.signature_algo} is not ECDSA P-384 with SHA-384"
            )
        for slot in _FIELDS:
            value = getattr(self, str(slot.name))
            if self.version < slot.since:
                if value is not None:
                    raise ReportMalformedError(f"{slot.name} does not exist in v{self.version}")
            elif not isinstance(value, slot.kind):
                raise ReportMalformedError(f"{slot.name} must be {slot.kind.__name__}")
            elif not self._fits(slot, value):
                raise ReportMalformedError(f"{slot.name} does not fit in {slot.size} bytes")

    @staticmethod
    def _fits(slot: _Slot, value: object) -> bool:
        try:
            return len(slot.encode(value)) == slot.size
        except OverflowError:  # negative or too large
            return False

    @classmethod
    def parse(cls, data: bytes) -> AttestationReport:
        """Decode and check the form of a report; says nothing about authenticity."""
        if len(data) != REPORT_SIZE:
            raise ReportMalformedError(
                f"report is {len(data)} bytes, an ATTESTATION_REPORT is {REPORT_SIZE}"
            )
        version = int.from_bytes(data[0:4], "little")
        _check_version(version)
        values: dict[str, Any] = {}
        for slot in _LAYOUT:
            if slot.name is None or version < slot.since:
                if any(data[slot.offset : slot.end]):
                    raise ReportMalformedError(
                        f"reserved bytes {slot.offset:#05x}-{slot.end - 1:#05x} are not zero"
                    )
                if slot.name is not None:
                    values[slot.name] = None
            else:
                values[slot.name] = slot.decode(data)
        return cls(**values)

    def serialize(self) -> bytes:
        out = bytearray(REPORT_SIZE)
        for slot in _FIELDS:
            value = getattr(self, str(slot.name))
            if value is not None:
                out[slot.offset : slot.end] = slot.encode(value)
        return bytes(out)

    @property
    def signed_bytes(self) -> bytes:
        """Bytes 0x000-0x29F, the part the signature covers."""
        return self.serialize()[:SIGNED_SIZE]

    def signature_der(self) -> bytes:
        """The signature as the DER ECDSA-Sig-Value that ``cryptography`` verifies."""
        return encode_dss_signature(self.signature_r, self.signature_s)

    @property
    def product(self) -> Product | None:
        """The product the CPUID fields name (v3+); None for v2 or an unknown model."""
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)


def parse_report(data: bytes) -> AttestationReport:
    return AttestationReport.parse(data)


def field_offsets() -> dict[str, tuple[int, int]]:
    """Name -> (offset, size) of every named field, for documentation and tests."""
    return {str(slot.name): (slot.offset, slot.size) for slot in _FIELDS}


assert [f.name for f in fields(AttestationReport)] == [s.name for s in _FIELDS]
