"""AMD certificates: the published ARK/ASK chains, tolerant loading, VCEK extensions."""

from __future__ import annotations

import hashlib
import warnings

import pytest
from cryptography import x509

from jobruntime.attestation import (
    AmdCertificate,
    EmulatedTee,
    EndorsementExtensions,
    Product,
    ProductChain,
    SigningKey,
    TcbParts,
    der,
    load_certificates,
)
from jobruntime.attestation.certs import _hwid
from jobruntime.attestation.errors import CertificateError, ChainError

from .conftest import AMD_FILES, PINNED, SHARED_AMD, data

GENUINE_VCEKS = ["milan_vcek.der", "genoa_vcek.pem", "milan_vlek.der", "turin_vcek.der"]


@pytest.mark.parametrize("product", list(Product))
def test_published_amd_chain_loads_and_verifies(
    amd_chains: dict[Product, ProductChain], product: Product
) -> None:
    chain = amd_chains[product]
    assert chain.product is product
    assert chain.endorses is SigningKey.VCEK
    assert not chain.emulated
    assert chain.ark.subject_cn == f"ARK-{product}"
    assert chain.ask.subject_cn == f"SEV-{product}"
    assert chain.ark.is_issued_by(chain.ark)  # self-signed, RSA-PSS SHA-384
    assert chain.ask.is_issued_by(chain.ark)
    assert ProductChain.from_pem(chain.to_pem()).ask.der == chain.ask.der
    assert chain.to_pem() == (PINNED / AMD_FILES[product]).read_text()


# Of the files AMD publishes (kdsintf.amd.com/vcek/v1/<product>/cert_chain).
AMD_PUBLISHED_SHA256 = {
    "ask_ark_milan.pem": "22e62f8d2c21a156470145fc75f7b5a377cb053ced3e97f0bd3f8d8ca5941ce6",
    "ask_ark_genoa.pem": "e6ecc853fa56d3170a624d40851f98a1036f974b50204ea69e6aec91d777aca3",
    "ask_ark_turin_vcek.pem": "cc9a52fbed3fbc6e4a0a50149a541a75938f975658909c2a6084767829b36e85",
}


def test_the_package_pins_exactly_amds_published_chains() -> None:
    """The tests use the package's chains; these digests tie them to AMD's files."""
    for name, digest in AMD_PUBLISHED_SHA256.items():
        assert hashlib.sha256((PINNED / name).read_bytes()).hexdigest() == digest, name
        shared = SHARED_AMD / name  # beside the checkout in CI; not needed by any test
        if shared.is_file():
            assert shared.read_bytes() == (PINNED / name).read_bytes(), name


def test_published_asvk_chain_endorses_vleks() -> None:
    chain = ProductChain.from_pem(data("asvk_ark_milan.pem"))
    assert (chain.product, chain.endorses, chain.ask.subject_cn) == (
        Product.MILAN,
        SigningKey.VLEK,
        "SEV-VLEK-Milan",
    )


def test_chains_of_different_products_do_not_mix(amd_chains: dict[Product, ProductChain]) -> None:
    with pytest.raises(ChainError) as caught:
        ProductChain(ark=amd_chains[Product.GENOA].ark, ask=amd_chains[Product.MILAN].ask)
    assert caught.value.code == "attestation.chain"


def test_tampered_ask_signature_is_refused(amd_chains: dict[Product, ProductChain]) -> None:
    chain = amd_chains[Product.MILAN]
    tampered = bytearray(chain.ask.der)
    tampered[-10] ^= 1  # inside the signature
    with pytest.raises(ChainError, match="not signed by ARK-Milan"):
        ProductChain(ark=chain.ark, ask=AmdCertificate.from_der(bytes(tampered)))


def test_an_ask_is_not_an_ark(amd_chains: dict[Product, ProductChain]) -> None:
    chain = amd_chains[Product.MILAN]
    with pytest.raises(ChainError):
        ProductChain(ark=chain.ask, ask=chain.ask)


@pytest.mark.parametrize("name", GENUINE_VCEKS)
def test_kds_certificates_with_serial_zero_load_without_warnings(name: str) -> None:
    raw = data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CryptographyDeprecationWarning either
        (cert,) = load_certificates(raw)
    assert cert.serial_number == 0
    assert not cert.parts.serial_is_rfc5280
    assert cert.parsed.serial_number == 1  # the stand-in cryptography parsed
    # The original bytes are kept: PEM out, DER back in, identical.
    assert load_certificates(cert.to_pem())[0].der == cert.der


def test_strict_parsers_object_to_the_kds_serial() -> None:
    """Why the tolerant loader exists: cryptography warns now and will refuse later."""
    raw = data("milan_vcek.der")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            x509.load_der_x509_certificate(raw).serial_number  # noqa: B018
        except ValueError:
            return
    assert any("serial number" in str(w.message) for w in seen)


@pytest.mark.parametrize("serial", [0, -5, -(2**100), 2**200, 1, 2**64])
def test_any_serial_loads_and_still_verifies(serial: int) -> None:
    tee = EmulatedTee.create(Product.MILAN, vcek_serial=serial)
    assert tee.vcek.serial_number == serial
    assert tee.vcek.parts.serial_is_rfc5280 == (0 < serial < 2**159)
    assert tee.vcek.is_issued_by(tee.chain.ask)
    reloaded = load_certificates(tee.vcek.to_pem())[0]
    assert reloaded.der == tee.vcek.der
    assert reloaded.serial_number == serial


def test_vcek_signed_by_the_published_ask(amd_chains: dict[Product, ProductChain]) -> None:
    vcek = load_certificates(data("milan_vcek.der"))[0]
    assert vcek.is_issued_by(amd_chains[Product.MILAN].ask)
    assert not vcek.is_issued_by(amd_chains[Product.GENOA].ask)
    turin = load_certificates(data("turin_vcek.der"))[0]
    assert turin.is_issued_by(amd_chains[Product.TURIN].ask)


def test_genuine_vcek_extensions() -> None:
    milan = EndorsementExtensions.of(load_certificates(data("milan_vcek.der"))[0], Product.MILAN)
    assert milan.product_name == "Milan-B0"
    assert milan.product is Product.MILAN
    assert milan.tcb == TcbParts(bootloader=2, tee=0, snp=5, microcode=68)
    assert milan.hwid is not None
    assert len(milan.hwid) == 64
    assert milan.csp_id is None


def test_genuine_turin_vcek_has_fmc_and_short_hwid() -> None:
    turin = EndorsementExtensions.of(load_certificates(data("turin_vcek.der"))[0], Product.TURIN)
    assert turin.product is Product.TURIN
    assert turin.tcb == TcbParts(fmc=0, bootloader=0, tee=0, snp=0, microcode=9)
    assert turin.hwid == bytes.fromhex("1e550a8ee5cf9f4d")


def test_genuine_vlek_names_its_cloud_provider() -> None:
    vlek = EndorsementExtensions.of(load_certificates(data("milan_vlek.der"))[0], Product.MILAN)
    assert vlek.hwid is None
    assert vlek.csp_id == "CN=cc-us-east-2.amazonaws.com"
    assert vlek.tcb == TcbParts(bootloader=4, tee=0, snp=24, microcode=217)  # 217 is 2 DER bytes


def test_hwid_in_an_octet_string_is_accepted() -> None:
    chip = bytes(range(64))
    assert _hwid(chip) == chip
    assert _hwid(b"\x04\x40" + chip) == chip
    with pytest.raises(CertificateError):
        _hwid(b"\x04\x03abc")


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x30\x03\x02\x01", b"not a certificate", b"-----BEGIN CERTIFICATE-----\n!!\n"],
)
def test_garbage_is_a_certificate_error(raw: bytes) -> None:
    with pytest.raises(CertificateError) as caught:
        load_certificates(raw)
    assert caught.value.code == "attestation.certificate"


def test_der_integer_encoding_is_minimal() -> None:
    cases = {0: "00", 1: "01", 127: "7f", 128: "0080", -1: "ff", -128: "80", -129: "ff7f"}
    for value, content in cases.items():
        assert der.integer_content(value).hex() == content
        assert der.decode_integer(der.encode_tlv(der.INTEGER, bytes.fromhex(content))) == value
    long = bytes(300)
    assert der.read_tlv(der.encode_tlv(der.OCTET_STRING, long)).content_start == 4
