"""A minimal DER walker for the few places ``cryptography`` cannot be used.

AMD's KDS issues VCEKs whose serial number is zero, which RFC 5280 forbids and
which recent ``cryptography`` releases warn about or refuse. We split such a
certificate ourselves (to verify the signature over the original TBS bytes) and
re-encode only its serial so the rest can still be parsed by ``cryptography``.
It also decodes the small INTEGER / IA5String / OCTET STRING values of AMD's
VCEK extensions. Only low tag numbers and definite lengths are supported.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobruntime.attestation.errors import CertificateError

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
IA5_STRING = 0x16
_VERSION_TAG = 0xA0  # tbsCertificate's [0] EXPLICIT version

MAX_RFC5280_SERIAL_OCTETS = 20


@dataclass(frozen=True)
class Tlv:
    """One element found in ``data``: tag, and where its content lies."""

    tag: int
    start: int
    content_start: int
    end: int

    def content(self, data: bytes) -> bytes:
        return data[self.content_start : self.end]

    def raw(self, data: bytes) -> bytes:
        return data[self.start : self.end]


def read_tlv(data: bytes, offset: int = 0, limit: int | None = None) -> Tlv:
    limit = len(data) if limit is None else limit
    if offset + 2 > limit:
        raise CertificateError("DER element truncated")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise CertificateError("DER high tag numbers are not supported")
    position = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or position + count > limit:
            raise CertificateError("DER length is indefinite or malformed")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    if position + length > limit:
        raise CertificateError("DER element runs past its container")
    return Tlv(tag, offset, position, position + length)


def children(data: bytes, parent: Tlv) -> list[Tlv]:
    found: list[Tlv] = []
    position = parent.content_start
    while position < parent.end:
        child = read_tlv(data, position, parent.end)
        found.append(child)
        position = child.end
    return found


def read_single(data: bytes, tag: int) -> bytes:
    """The content of ``data`` when it is exactly one element with ``tag``."""
    element = read_tlv(data)
    if element.tag != tag or element.end != len(data):
        raise CertificateError(f"expected one DER element with tag {tag:#04x}")
    return element.content(data)


def encode_tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def integer_content(value: int) -> bytes:
    """Minimal two's-complement content octets of an INTEGER."""
    bits = (value if value >= 0 else ~value).bit_length()
    return value.to_bytes(bits // 8 + 1, "big", signed=True)


def decode_integer(data: bytes) -> int:
    return int.from_bytes(read_single(data, INTEGER), "big", signed=True)


def decode_ia5string(data: bytes) -> str:
    try:
        return read_single(data, IA5_STRING).decode("ascii")
    except UnicodeDecodeError:
        raise CertificateError("IA5String is not ASCII") from None


@dataclass(frozen=True)
class CertificateParts:
    """The three parts of a Certificate, as the original bytes."""

    tbs: bytes
    signature_algorithm: bytes  # the AlgorithmIdentifier element
    signature: bytes  # the BIT STRING's bits, without the unused-bits octet
    serial: bytes  # the serialNumber INTEGER's content octets

    @property
    def serial_number(self) -> int:
        return int.from_bytes(self.serial, "big", signed=True)

    @property
    def serial_is_rfc5280(self) -> bool:
        return self.serial_number > 0 and len(self.serial) <= MAX_RFC5280_SERIAL_OCTETS


def _tbs_elements(der: bytes) -> tuple[list[Tlv], bytes, list[Tlv]]:
    outer = read_tlv(der)
    if outer.tag != SEQUENCE or outer.end != len(der):
        raise CertificateError("certificate is not one DER SEQUENCE")
    parts = children(der, outer)
    if len(parts) != 3 or parts[0].tag != SEQUENCE or parts[2].tag != BIT_STRING:
        raise CertificateError("certificate does not have tbsCertificate, algorithm, signature")
    tbs = parts[0].raw(der)
    return parts, tbs, children(tbs, read_tlv(tbs))


def _serial_index(tbs_children: list[Tlv]) -> int:
    index = 1 if tbs_children and tbs_children[0].tag == _VERSION_TAG else 0
    if len(tbs_children) <= index or tbs_children[index].tag != INTEGER:
        raise CertificateError("tbsCertificate has no serialNumber")
    return index


def split_certificate(der: bytes) -> CertificateParts:
    parts, tbs, tbs_children = _tbs_elements(der)
    serial = tbs_children[_serial_index(tbs_children)].content(tbs)
    bits = parts[2].content(der)
    if not bits or bits[0] != 0:
        raise CertificateError("signature BIT STRING has unused bits")
    return CertificateParts(tbs, parts[1].raw(der), bits[1:], serial)


def assemble_certificate(tbs: bytes, signature_algorithm: bytes, signature: bytes) -> bytes:
    body = tbs + signature_algorithm + encode_tlv(BIT_STRING, b"\x00" + signature)
    return encode_tlv(SEQUENCE, body)


def replace_serial(der: bytes, serial: int) -> bytes:
    """The same certificate with another serialNumber; its signature no longer matches."""
    parts, tbs, tbs_children = _tbs_elements(der)
    old = tbs_children[_serial_index(tbs_children)]
    content = (
        tbs[read_tlv(tbs).content_start : old.start]
        + encode_tlv(INTEGER, integer_content(serial))
        + tbs[old.end :]
    )
    return assemble_certificate(
        encode_tlv(SEQUENCE, content), parts[1].raw(der), parts[2].content(der)[1:]
    )
