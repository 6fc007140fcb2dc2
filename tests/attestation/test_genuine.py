"""Genuine reports from AMD hardware, verified end to end against AMD's published ARK/ASK.

Sources and licences of the fixtures: data/SOURCES.md.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobruntime.attestation import (
    AllOf,
    AllowedMeasurements,
    AllowedVmpl,
    AttestationReport,
    AttestationVerifier,
    EndorsementExtensions,
    MinimumTcb,
    NoDebug,
    Product,
    ProductChain,
    SigningKey,
    TcbParts,
    errors,
    load_certificates,
)

from .conftest import AcceptAll, data


def test_milan_v2_report(amd_chains: dict[Product, ProductChain]) -> None:
    report = data("milan_v2_report.bin")
    verifier = AttestationVerifier(amd_chains.values(), Product.MILAN, AcceptAll())
    verified = verifier.verify(report, data("milan_vcek.der"))
    assert verified.signing_key is SigningKey.VCEK
    assert verified.reported_tcb == TcbParts(bootloader=2, tee=0, snp=5, microcode=68)
    assert not verified.emulated


def test_milan_v2_report_was_launched_with_debug_allowed(
    amd_chains: dict[Product, ProductChain],
) -> None:
    """A genuine report is still refused when the guest policy lets the host debug it."""
    verifier = AttestationVerifier(amd_chains.values(), Product.MILAN, NoDebug())
    with pytest.raises(errors.DebugEnabledError):
        verifier.verify(data("milan_v2_report.bin"), data("milan_vcek.der"))


def test_genoa_v3_report_from_azure(amd_chains: dict[Product, ProductChain]) -> None:
    report = AttestationReport.parse(data("genoa_v3_report.bin"))
    minimum = TcbParts(bootloader=10, tee=0, snp=23, microcode=84)
    policy = AllOf(
        NoDebug(),
        AllowedVmpl([0]),
        AllowedMeasurements([report.measurement]),
        MinimumTcb(minimum, Product.GENOA),
    )
    verifier = AttestationVerifier(amd_chains.values(), Product.GENOA, policy)
    verified = verifier.verify(report, data("genoa_vcek.pem"))
    assert verified.product is Product.GENOA
    assert verified.reported_tcb == minimum
    assert report.product is Product.GENOA  # from the v3 CPUID fields


def test_genoa_tcb_floor_one_above_is_too_low(amd_chains: dict[Product, ProductChain]) -> None:
    policy = MinimumTcb(TcbParts(bootloader=10, tee=0, snp=24, microcode=84), Product.GENOA)
    verifier = AttestationVerifier(amd_chains.values(), Product.GENOA, policy)
    with pytest.raises(errors.TcbTooLowError, match="snp=23<24"):
        verifier.verify(data("genoa_v3_report.bin"), data("genoa_vcek.pem"))


def vlek_verifier(amd_chains: dict[Product, ProductChain]) -> AttestationVerifier:
    asvk = ProductChain.from_pem(data("asvk_ark_milan.pem"))
    return AttestationVerifier([*amd_chains.values(), asvk], Product.MILAN, AllowedVmpl([1]))


def test_milan_vlek_v3_report_from_aws(amd_chains: dict[Product, ProductChain]) -> None:
    # The VLEK was valid from 2024-12-10 to 2025-12-10; verify as of a day inside it.
    verified = vlek_verifier(amd_chains).verify(
        data("milan_vlek_v3_report.bin"),
        data("milan_vlek.der"),
        at=datetime(2025, 6, 1, tzinfo=UTC),
    )
    assert verified.signing_key is SigningKey.VLEK
    assert verified.report.vmpl == 1


def test_expired_vlek_is_refused(amd_chains: dict[Product, ProductChain]) -> None:
    with pytest.raises(errors.ChainError, match="SEV-VLEK is not valid"):
        vlek_verifier(amd_chains).verify(
            data("milan_vlek_v3_report.bin"),
            data("milan_vlek.der"),
            at=datetime(2026, 1, 1, tzinfo=UTC),
        )


def test_vlek_without_its_asvk_is_refused(amd_chains: dict[Product, ProductChain]) -> None:
    verifier = AttestationVerifier(amd_chains.values(), Product.MILAN, AcceptAll())
    with pytest.raises(errors.ChainError, match="not signed by a pinned ASK"):
        verifier.verify(data("milan_vlek_v3_report.bin"), data("milan_vlek.der"))


def test_genuine_report_under_the_wrong_product(amd_chains: dict[Product, ProductChain]) -> None:
    verifier = AttestationVerifier(amd_chains.values(), Product.GENOA, AcceptAll())
    with pytest.raises(errors.ProductMismatchError):
        verifier.verify(data("milan_v2_report.bin"), data("milan_vcek.der"))


def test_genuine_report_with_another_chips_vcek(amd_chains: dict[Product, ProductChain]) -> None:
    verifier = AttestationVerifier(amd_chains.values(), Product.GENOA, AcceptAll())
    with pytest.raises(errors.ReportSignatureError):
        verifier.verify(data("milan_v2_report.bin"), data("genoa_vcek.pem"))


@pytest.mark.parametrize("offset", [0x004, 0x050, 0x090, 0x180, 0x1A0, 0x1F0, 0x2A0, 0x2E8])
def test_tampered_genuine_report(amd_chains: dict[Product, ProductChain], offset: int) -> None:
    raw = bytearray(data("genoa_v3_report.bin"))
    raw[offset] ^= 0x01
    verifier = AttestationVerifier(amd_chains.values(), Product.GENOA, AcceptAll())
    with pytest.raises(errors.ReportSignatureError):
        verifier.verify(bytes(raw), data("genoa_vcek.pem"))


def test_tampered_reserved_byte_is_malformed_before_any_crypto(
    amd_chains: dict[Product, ProductChain],
) -> None:
    raw = bytearray(data("genoa_v3_report.bin"))
    raw[0x29F] = 1
    verifier = AttestationVerifier(amd_chains.values(), Product.GENOA, AcceptAll())
    with pytest.raises(errors.ReportMalformedError):
        verifier.verify(bytes(raw), data("genoa_vcek.pem"))


@pytest.mark.parametrize(
    ("report", "vcek", "product"),
    [
        ("milan_v2_report.bin", "milan_vcek.der", Product.MILAN),
        ("genoa_v3_report.bin", "genoa_vcek.pem", Product.GENOA),
    ],
)
def test_genuine_vcek_hwid_is_the_reports_chip_id(report: str, vcek: str, product: Product) -> None:
    """What step 3 compares, on real pairs: hwID == CHIP_ID and TCB extensions == REPORTED_TCB."""
    parsed = AttestationReport.parse(data(report))
    extensions = EndorsementExtensions.of(load_certificates(data(vcek))[0], product)
    assert not parsed.signer_info.mask_chip_key
    assert extensions.hwid == parsed.chip_id
    assert extensions.tcb == parsed.reported_tcb.parts(product)
