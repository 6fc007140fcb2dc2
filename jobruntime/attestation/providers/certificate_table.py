"""The SEV-SNP certificate table a host may attach to an extended report.

Layout (SEV-SNP GHCB specification, "certificate table"; Linux ``snp_msg_cert_entry``):
entries of (GUID 16 bytes, offset u32, length u32), little-endian, terminated by an
all-zero entry; offsets are from the start of the table. Both configfs-tsm
``auxblob`` and ``SNP_GET_EXT_REPORT`` hand it over as is, so they share this parser.

GUIDs are on the wire in RFC 4122 byte order, as AMD's own tooling writes them
(``uuid_parse``); the little-endian (EFI) order is accepted too, since a table is
produced by whatever host software the operator runs and the GUIDs cannot collide.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable

from jobruntime.attestation.certs import AmdCertificate, certificates_pem, load_certificates
from jobruntime.attestation.providers.errors import CollectError
from jobruntime.attestation.report import AttestationReport, SigningKey
from jobruntime.errors import AttestationError

VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")  # also the ASVK with a VLEK
ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")

_ENTRY = struct.Struct("<16sII")
_MAX_ENTRIES = 64
_KNOWN = {raw: guid for guid in (VCEK, VLEK, ASK, ARK) for raw in (guid.bytes, guid.bytes_le)}


def parse_certificate_table(table: bytes) -> dict[uuid.UUID, bytes]:
    """GUID -> certificate bytes for every entry; unknown GUIDs are kept as read."""
    entries: dict[uuid.UUID, bytes] = {}
    for index in range(_MAX_ENTRIES):
        start = index * _ENTRY.size
        if start + _ENTRY.size > len(table):
            break
        raw, offset, length = _ENTRY.unpack_from(table, start)
        if not any(raw) and not offset and not length:
            return entries
        if offset + length > len(table) or length == 0:
            raise CollectError(f"certificate table entry {index} points outside the table")
        entries[_KNOWN.get(raw, uuid.UUID(bytes=raw))] = table[offset : offset + length]
    raise CollectError("certificate table has no terminating all-zero entry")


def build_certificate_table(entries: Iterable[tuple[uuid.UUID, bytes]]) -> bytes:
    """A table as a host builds one (RFC 4122 GUID order); for emulators and tests."""
    items = list(entries)
    offset = (len(items) + 1) * _ENTRY.size
    header, body = bytearray(), bytearray()
    for guid, data in items:
        header += _ENTRY.pack(guid.bytes, offset + len(body), len(data))
        body += data
    return bytes(header + bytes(_ENTRY.size) + body)


def certificates_from_table(table: bytes, signing_key: SigningKey) -> str:
    """PEM: the key the report names (VCEK or VLEK), then ASK/ASVK and ARK if present.

    Without that endorsement certificate the rest is useless to a verifier (who
    pins ASK/ARK anyway), so the result is then empty and the verifier must fetch
    the VCEK/VLEK from AMD's KDS.
    """
    if not table:
        return ""
    entries = parse_certificate_table(table)
    endorsement = VLEK if signing_key is SigningKey.VLEK else VCEK
    if endorsement not in entries:
        return ""
    chosen = [entries[guid] for guid in (endorsement, ASK, ARK) if guid in entries]
    return certificates_pem(_load(data) for data in chosen)


def sev_snp_certificates(report: bytes, table: bytes) -> str:
    """The certificates to send with a report from the firmware (checks the report's form)."""
    return certificates_from_table(table, AttestationReport.parse(report).signer_info.signing_key)


def _load(data: bytes) -> AmdCertificate:
    # Hosts put DER or PEM in the table; either loads.
    try:
        (certificate,) = load_certificates(data)
    except (AttestationError, ValueError):
        raise CollectError("a certificate table entry is not one certificate") from None
    return certificate
