"""ATTESTATION_REPORT parsing: offsets, round trips, and typed refusals of bad input."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from jobruntime.attestation import (
    REPORT_SIZE,
    AttestationReport,
    EmulatedTee,
    GuestPolicy,
    PlatformInfo,
    Product,
    SignerInfo,
    SigningKey,
    TcbParts,
    TcbVersion,
)
from jobruntime.attestation.errors import (
    ReportMalformedError,
    UnsupportedReportVersionError,
    UnsupportedSignatureAlgorithmError,
)
from jobruntime.attestation.product import product_from_cpuid, product_from_name
from jobruntime.attestation.report import field_offsets
from jobruntime.errors import AttestationError

from .conftest import data

# Written from the ABI table independently of report.py: name -> (offset, size).
SPEC_OFFSETS = {
    "version": (0x000, 4),
    "guest_svn": (0x004, 4),
    "policy": (0x008, 8),
    "family_id": (0x010, 16),
    "image_id": (0x020, 16),
    "vmpl": (0x030, 4),
    "signature_algo": (0x034, 4),
    "current_tcb": (0x038, 8),
    "platform_info": (0x040, 8),
    "signer_info": (0x048, 4),
    "report_data": (0x050, 64),
    "measurement": (0x090, 48),
    "host_data": (0x0C0, 32),
    "id_key_digest": (0x0E0, 48),
    "author_key_digest": (0x110, 48),
    "report_id": (0x140, 32),
    "report_id_ma": (0x160, 32),
    "reported_tcb": (0x180, 8),
    "cpuid_fam_id": (0x188, 1),
    "cpuid_mod_id": (0x189, 1),
    "cpuid_step": (0x18A, 1),
    "chip_id": (0x1A0, 64),
    "committed_tcb": (0x1E0, 8),
    "current_build": (0x1E8, 1),
    "current_minor": (0x1E9, 1),
    "current_major": (0x1EA, 1),
    "committed_build": (0x1EC, 1),
    "committed_minor": (0x1ED, 1),
    "committed_major": (0x1EE, 1),
    "launch_tcb": (0x1F0, 8),
    "launch_mit_vector": (0x1F8, 8),
    "current_mit_vector": (0x200, 8),
    "signature_r": (0x2A0, 48),
    "signature_s": (0x2E8, 48),
}

GENUINE = ["milan_v2_report.bin", "genoa_v3_report.bin", "milan_vlek_v3_report.bin"]


def hand_built_v5() -> tuple[bytes, dict[str, object]]:
    """A v5 report with a distinct value in every field, packed by hand."""
    buf = bytearray(REPORT_SIZE)
    expected: dict[str, object] = {}

    def put(fmt: str, offset: int, value: int, name: str) -> None:
        struct.pack_into(fmt, buf, offset, value)
        expected[name] = value

    def put_bytes(offset: int, size: int, seed: int, name: str) -> None:
        value = bytes((seed + i) % 256 for i in range(size))
        buf[offset : offset + size] = value
        expected[name] = value

    put("<I", 0x000, 5, "version")
    put("<I", 0x004, 0x01020304, "guest_svn")
    put("<Q", 0x008, 0x3FF_0F02, "policy")
    put_bytes(0x010, 16, 0x10, "family_id")
    put_bytes(0x020, 16, 0x20, "image_id")
    put("<I", 0x030, 2, "vmpl")
    put("<I", 0x034, 1, "signature_algo")
    put("<Q", 0x038, 0x1100000000002233, "current_tcb")
    put("<Q", 0x040, 0xBF, "platform_info")
    put("<I", 0x048, 0b00111, "signer_info")
    put_bytes(0x050, 64, 0x50, "report_data")
    put_bytes(0x090, 48, 0x90, "measurement")
    put_bytes(0x0C0, 32, 0xC0, "host_data")
    put_bytes(0x0E0, 48, 0xE0, "id_key_digest")
    put_bytes(0x110, 48, 0x11, "author_key_digest")
    put_bytes(0x140, 32, 0x40, "report_id")
    put_bytes(0x160, 32, 0x60, "report_id_ma")
    put("<Q", 0x180, 0x4400000000000A0B, "reported_tcb")
    put("B", 0x188, 0x1A, "cpuid_fam_id")
    put("B", 0x189, 0x02, "cpuid_mod_id")
    put("B", 0x18A, 0x01, "cpuid_step")
    put_bytes(0x1A0, 64, 0xA0, "chip_id")
    put("<Q", 0x1E0, 0x5500000000000C0D, "committed_tcb")
    put("B", 0x1E8, 7, "current_build")
    put("B", 0x1E9, 57, "current_minor")
    put("B", 0x1EA, 1, "current_major")
    put("B", 0x1EC, 6, "committed_build")
    put("B", 0x1ED, 56, "committed_minor")
    put("B", 0x1EE, 2, "committed_major")
    put("<Q", 0x1F0, 0x6600000000000E0F, "launch_tcb")
    put("<Q", 0x1F8, 0x0123456789ABCDEF, "launch_mit_vector")
    put("<Q", 0x200, 0x0FEDCBA987654321, "current_mit_vector")
    r, s = 0xAB << 376 | 0x1234, 0xCD << 376 | 0x5678  # 48 significant bytes each
    buf[0x2A0 : 0x2A0 + 72] = r.to_bytes(72, "little")
    buf[0x2E8 : 0x2E8 + 72] = s.to_bytes(72, "little")
    expected["signature_r"], expected["signature_s"] = r, s
    return bytes(buf), expected


def raw_of(value: object) -> object:
    if isinstance(value, GuestPolicy | PlatformInfo | SignerInfo | TcbVersion):
        return value.raw
    return value


def test_layout_table_matches_the_spec() -> None:
    assert field_offsets() == SPEC_OFFSETS


def test_every_field_is_read_from_its_offset() -> None:
    buf, expected = hand_built_v5()
    report = AttestationReport.parse(buf)
    assert {name: raw_of(getattr(report, name)) for name in expected} == expected
    assert report.serialize() == buf
    assert report.signed_bytes == buf[:0x2A0]


def test_decoded_views_of_the_hand_built_report() -> None:
    report = AttestationReport.parse(hand_built_v5()[0])
    policy = report.policy  # 0x3FF0F02
    assert (policy.abi_minor, policy.abi_major) == (0x02, 0x0F)
    assert all(
        (
            policy.smt,
            policy.reserved_one,
            policy.migrate_ma,
            policy.debug,
            policy.single_socket,
            policy.cxl_allow,
            policy.mem_aes_256_xts,
            policy.rapl_dis,
            policy.ciphertext_hiding,
            policy.page_swap_disable,
        )
    )
    info = report.platform_info  # 0xBF: every defined bit
    assert all(
        (
            info.smt_enabled,
            info.tsme_enabled,
            info.ecc_enabled,
            info.rapl_disabled,
            info.ciphertext_hiding_enabled,
            info.alias_check_complete,
            info.tio_enabled,
        )
    )
    assert report.signer_info.author_key_en
    assert report.signer_info.mask_chip_key
    assert report.signer_info.signing_key is SigningKey.VLEK
    assert report.product is Product.TURIN  # family 0x1A model 0x02
    # Turin layout: fmc, bootloader, tee, snp, -, -, -, microcode.
    assert report.reported_tcb.parts(Product.TURIN) == TcbParts(
        fmc=0x0B, bootloader=0x0A, tee=0, snp=0, microcode=0x44
    )


def test_policy_bits_one_at_a_time() -> None:
    names = {
        16: "smt",
        17: "reserved_one",
        18: "migrate_ma",
        19: "debug",
        20: "single_socket",
        21: "cxl_allow",
        22: "mem_aes_256_xts",
        23: "rapl_dis",
        24: "ciphertext_hiding",
        25: "page_swap_disable",
    }
    for bit, name in names.items():
        policy = GuestPolicy(1 << bit)
        assert {n for n in names.values() if getattr(policy, n)} == {name}


def test_tcb_layouts_differ_between_generations() -> None:
    tcb = TcbVersion(int.from_bytes(bytes([1, 2, 3, 4, 0, 0, 5, 6]), "little"))
    assert tcb.parts(Product.MILAN) == TcbParts(bootloader=1, tee=2, snp=5, microcode=6)
    assert tcb.parts(Product.GENOA) == tcb.parts(Product.MILAN)
    assert tcb.parts(Product.TURIN) == TcbParts(fmc=1, bootloader=2, tee=3, snp=4, microcode=6)
    for product in Product:
        fmc = 5 if product.has_fmc else None
        parts = TcbParts(bootloader=9, tee=8, snp=7, microcode=6, fmc=fmc)
        assert TcbVersion.from_parts(parts, product).parts(product) == parts
    with pytest.raises(ValueError, match="fmc"):
        TcbVersion.from_parts(TcbParts(bootloader=1, tee=0, snp=0, microcode=0), Product.TURIN)


def test_products_from_cpuid_and_names() -> None:
    assert product_from_cpuid(0x19, 0x01) is Product.MILAN
    assert product_from_cpuid(0x19, 0x11) is Product.GENOA
    assert product_from_cpuid(0x19, 0xA0) is Product.GENOA
    assert product_from_cpuid(0x1A, 0x02) is Product.TURIN
    assert product_from_cpuid(0x17, 0x31) is None
    assert product_from_name("Milan-B0") is Product.MILAN
    assert product_from_name("Genoa") is Product.GENOA
    assert product_from_name("Venice") is None


@pytest.mark.parametrize("name", GENUINE)
def test_genuine_reports_round_trip(name: str) -> None:
    raw = data(name)
    assert AttestationReport.parse(raw).serialize() == raw


@pytest.mark.parametrize("version", [2, 3, 5])
def test_emulated_reports_round_trip(tee: EmulatedTee, version: int) -> None:
    raw = tee.report(version=version)
    report = AttestationReport.parse(raw)
    assert report.serialize() == raw
    assert (report.cpuid_fam_id is None) == (version == 2)
    assert (report.launch_mit_vector is None) == (version < 5)


def refused(raw: bytes) -> AttestationError:
    with pytest.raises(AttestationError) as caught:
        AttestationReport.parse(raw)
    return caught.value


def with_bytes(offset: int, value: bytes, base: bytes | None = None) -> bytes:
    raw = bytearray(base if base is not None else data("genoa_v3_report.bin"))
    raw[offset : offset + len(value)] = value
    return bytes(raw)


@pytest.mark.parametrize("size", [0, 0x2A0, REPORT_SIZE - 1, REPORT_SIZE + 1, 4000])
def test_wrong_size(size: int) -> None:
    error = refused((data("genoa_v3_report.bin") * 4)[:size])
    assert type(error) is ReportMalformedError
    assert error.code == "attestation.malformed"
    assert str(size) in str(error)


@pytest.mark.parametrize("version", [0, 1, 6, 0xFFFFFFFF])
def test_unsupported_version(version: int) -> None:
    error = refused(with_bytes(0, version.to_bytes(4, "little")))
    assert type(error) is UnsupportedReportVersionError
    assert error.code == "attestation.unsupported_version"
    assert error.exit_code == 18


@pytest.mark.parametrize("algo", [0, 2, 0x100])
def test_unsupported_signature_algorithm(algo: int) -> None:
    error = refused(with_bytes(0x34, algo.to_bytes(4, "little")))
    assert type(error) is UnsupportedSignatureAlgorithmError
    assert error.code == "attestation.unsupported_algorithm"


@pytest.mark.parametrize(
    "offset",
    [
        0x2A0 + 48,  # R's unused high bytes
        0x2A0 + 71,
        0x2E8 + 48,  # S's unused high bytes
        0x330,  # reserved rest of the signature area
        REPORT_SIZE - 1,
    ],
)
def test_nonzero_reserved_signature_bytes(offset: int) -> None:
    error = refused(with_bytes(offset, b"\x01"))
    assert type(error) is ReportMalformedError
    assert error.code == "attestation.malformed"
    assert "reserved" in str(error)


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("genoa_v3_report.bin", 0x04C),
        ("genoa_v3_report.bin", 0x18B),
        ("genoa_v3_report.bin", 0x1EB),
        ("genoa_v3_report.bin", 0x1F8),  # LAUNCH_MIT_VECTOR does not exist before v5
        ("genoa_v3_report.bin", 0x29F),
        ("milan_v2_report.bin", 0x188),  # CPUID_FAM_ID does not exist in v2
    ],
)
def test_nonzero_reserved_body_bytes(name: str, offset: int) -> None:
    error = refused(with_bytes(offset, b"\x80", data(name)))
    assert type(error) is ReportMalformedError


@pytest.mark.parametrize("signer_info", [0b01000, 0b11000, 1 << 5, 1 << 31])
def test_reserved_signer_info(signer_info: int) -> None:
    error = refused(with_bytes(0x48, signer_info.to_bytes(4, "little")))
    assert type(error) is ReportMalformedError


def test_constructed_reports_are_checked_too() -> None:
    report = AttestationReport.parse(data("genoa_v3_report.bin"))
    with pytest.raises(ReportMalformedError, match="report_data"):
        dataclasses.replace(report, report_data=b"short")
    with pytest.raises(ReportMalformedError, match="vmpl"):
        dataclasses.replace(report, vmpl=-1)
    with pytest.raises(ReportMalformedError, match="launch_mit_vector"):
        dataclasses.replace(report, launch_mit_vector=0)
    with pytest.raises(UnsupportedReportVersionError):
        dataclasses.replace(report, version=9)
