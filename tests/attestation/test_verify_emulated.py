"""End-to-end verification against the emulated TEE: one test per refusal code."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jobruntime.attestation import (
    AttestationReport,
    AttestationVerifier,
    EmulatedTee,
    MinimumTcb,
    Policy,
    Product,
    ProductChain,
    SignerInfo,
    TcbParts,
    errors,
    load_certificates,
    sign_report,
    standard_policy,
)
from jobruntime.errors import AttestationError

from .conftest import AcceptAll

MEASUREMENT = bytes.fromhex("11" * 48)
BINDING = bytes(range(64))
HOST_DATA = b"h" * 32


def strict_policy(tee: EmulatedTee) -> Policy:
    return standard_policy(
        tee.product,
        measurements=[MEASUREMENT],
        minimum_tcb=tee.tcb,
        report_data=BINDING,
        minimum_guest_svn=2,
        vmpls=[0],
        host_data=HOST_DATA,
    )


def good_report(tee: EmulatedTee, **overrides: object) -> bytes:
    fields: dict[str, object] = {
        "measurement": MEASUREMENT,
        "report_data": BINDING,
        "host_data": HOST_DATA,
        "guest_svn": 2,
        **overrides,
    }
    return tee.report(**fields)  # type: ignore[arg-type]


def verifier(tee: EmulatedTee, policy: Policy | None = None) -> AttestationVerifier:
    """Pinned to ``tee``'s own (emulated) chain, so emulated evidence is allowed."""
    return AttestationVerifier(
        [tee.chain], tee.product, policy or strict_policy(tee), allow_emulated=True
    )


@pytest.mark.parametrize("version", [2, 3, 5])
def test_valid_report_verifies(tee: EmulatedTee, version: int) -> None:
    verified = verifier(tee).verify(good_report(tee, version=version), tee.vcek)
    assert verified.product is Product.GENOA
    assert verified.reported_tcb == tee.tcb
    assert verified.emulated
    assert verified.report.measurement == MEASUREMENT


def test_turin_v5_report_with_fmc_verifies(turin_tee: EmulatedTee) -> None:
    verified = verifier(turin_tee).verify(good_report(turin_tee, version=5), turin_tee.vcek)
    assert verified.reported_tcb.fmc == turin_tee.tcb.fmc
    assert len(turin_tee.chip_id.rstrip(b"\0")) <= 8


def test_masked_chip_id_skips_the_hwid_check(tee: EmulatedTee) -> None:
    verified = verifier(tee).verify(good_report(tee, mask_chip_id=True), tee.vcek)
    assert verified.report.chip_id == bytes(64)


def test_chain_survives_a_pem_round_trip(tee: EmulatedTee) -> None:
    chain = ProductChain.from_pem(tee.chain.to_pem())
    (vcek,) = load_certificates(tee.vcek.to_pem())
    policy = strict_policy(tee)
    AttestationVerifier([chain], Product.GENOA, policy, allow_emulated=True).verify(
        good_report(tee), vcek
    )
    assert chain.ark.subject_cn == "ARK-Emulated-Genoa"
    assert chain.ark.organization == "Emulated TEE"
    assert chain.emulated


def flipped(raw: bytes, offset: int = 0x90) -> bytes:
    out = bytearray(raw)
    out[offset] ^= 0x01
    return bytes(out)


def resigned(tee: EmulatedTee, raw: bytes, **changes: object) -> bytes:
    """The report changed, then signed again by ``tee``'s own VCEK."""
    changed = dataclasses.replace(AttestationReport.parse(raw), **changes)  # type: ignore[arg-type]
    return sign_report(changed, tee.vcek_key).serialize()


Case = Callable[[EmulatedTee, EmulatedTee], tuple[AttestationVerifier, bytes, object]]

CASES: dict[str, tuple[Case, type[AttestationError], str]] = {
    "bit-flipped report": (
        lambda t, o: (verifier(t), flipped(good_report(t)), t.vcek),
        errors.ReportSignatureError,
        "attestation.signature",
    ),
    "forged by another key": (
        lambda t, o: (
            verifier(t),
            sign_report(
                AttestationReport.parse(good_report(t)), ec.generate_private_key(ec.SECP384R1())
            ).serialize(),
            t.vcek,
        ),
        errors.ReportSignatureError,
        "attestation.signature",
    ),
    "VCEK from another emulated chain": (
        lambda t, o: (verifier(t), good_report(o), o.vcek),
        errors.ChainError,
        "attestation.chain",
    ),
    "wrong product": (
        lambda t, o: (
            AttestationVerifier([t.chain], Product.MILAN, AcceptAll(), allow_emulated=True),
            good_report(t),
            t.vcek,
        ),
        errors.ProductMismatchError,
        "attestation.product",
    ),
    "CPUID names another product": (
        lambda t, o: (verifier(t), resigned(t, good_report(t), cpuid_mod_id=0x01), t.vcek),
        errors.ProductMismatchError,
        "attestation.product",
    ),
    "TCB below minimum": (
        lambda t, o: (
            verifier(t, MinimumTcb(TcbParts(bootloader=0, tee=0, snp=99, microcode=0), t.product)),
            good_report(t),
            t.vcek,
        ),
        errors.TcbTooLowError,
        "attestation.tcb_too_low",
    ),
    "VCEK TCB extensions differ from REPORTED_TCB": (
        lambda t, o: (
            verifier(t),
            good_report(t, reported_tcb=dataclasses.replace(t.tcb, snp=t.tcb.snp - 1)),
            t.vcek,
        ),
        errors.TcbMismatchError,
        "attestation.tcb_mismatch",
    ),
    "CHIP_ID differs from hwID": (
        lambda t, o: (verifier(t), resigned(t, good_report(t), chip_id=o.chip_id), t.vcek),
        errors.ChipIdMismatchError,
        "attestation.chip_id",
    ),
    "report claims a VLEK signed it": (
        lambda t, o: (
            verifier(t),
            resigned(t, good_report(t), signer_info=SignerInfo(0b100)),
            t.vcek,
        ),
        errors.ChainError,
        "attestation.chain",
    ),
    "debug allowed by guest policy": (
        lambda t, o: (verifier(t), good_report(t, policy=0x30000 | 1 << 19), t.vcek),
        errors.DebugEnabledError,
        "attestation.debug",
    ),
    "measurement not allowed": (
        lambda t, o: (verifier(t), good_report(t, measurement=b"\x22" * 48), t.vcek),
        errors.MeasurementError,
        "attestation.measurement",
    ),
    "report_data is not the binding": (
        lambda t, o: (verifier(t), good_report(t, report_data=bytes(64)), t.vcek),
        errors.ReportDataError,
        "attestation.report_data",
    ),
    "host_data differs": (
        lambda t, o: (verifier(t), good_report(t, host_data=bytes(32)), t.vcek),
        errors.HostDataError,
        "attestation.host_data",
    ),
    "VMPL not allowed": (
        lambda t, o: (verifier(t), good_report(t, vmpl=2), t.vcek),
        errors.VmplError,
        "attestation.vmpl",
    ),
    "guest SVN too low": (
        lambda t, o: (verifier(t), good_report(t, guest_svn=1), t.vcek),
        errors.GuestSvnError,
        "attestation.guest_svn",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_refusals(tee: EmulatedTee, other_tee: EmulatedTee, case: str) -> None:
    build, error_type, code = CASES[case]
    check, raw, vcek = build(tee, other_tee)
    with pytest.raises(AttestationError) as caught:
        check.verify(raw, vcek)  # type: ignore[arg-type]
    assert type(caught.value) is error_type
    assert caught.value.code == code
    assert caught.value.exit_code == 18
    assert "\n" not in caught.value.one_line()


def test_turin_fmc_below_minimum_is_named(turin_tee: EmulatedTee) -> None:
    assert turin_tee.tcb.fmc is not None  # Turin's TCB has an FMC field
    minimum = dataclasses.replace(turin_tee.tcb, fmc=turin_tee.tcb.fmc + 1)
    check = verifier(turin_tee, MinimumTcb(minimum, Product.TURIN))
    with pytest.raises(errors.TcbTooLowError, match="fmc="):
        check.verify(good_report(turin_tee), turin_tee.vcek)


def test_emulated_evidence_is_refused_by_a_production_verifier(
    amd_chains: dict[Product, ProductChain], tee: EmulatedTee
) -> None:
    production = AttestationVerifier(amd_chains.values(), Product.GENOA, strict_policy(tee))
    with pytest.raises(errors.EmulatedRootError) as caught:
        production.verify(good_report(tee), tee.vcek)
    assert caught.value.code == "attestation.emulated"


def test_emulated_root_cannot_be_pinned_without_allow_emulated(tee: EmulatedTee) -> None:
    with pytest.raises(errors.EmulatedRootError) as caught:
        AttestationVerifier([tee.chain], Product.GENOA, strict_policy(tee))
    assert caught.value.code == "attestation.emulated"


def test_expired_vcek_is_refused(tee: EmulatedTee) -> None:
    later = datetime(2100, 1, 1, tzinfo=UTC)
    with pytest.raises(errors.ChainError, match="not valid at"):
        verifier(tee).verify(good_report(tee), tee.vcek, at=later)


def test_evidence_can_be_given_as_bytes_and_pem(tee: EmulatedTee) -> None:
    check = verifier(tee)
    check.verify(good_report(tee), tee.vcek.der)
    check.verify(good_report(tee), tee.vcek.to_pem())
    with pytest.raises(errors.CertificateError):
        check.verify(good_report(tee), tee.chain.to_pem())  # two certificates, neither a VCEK
