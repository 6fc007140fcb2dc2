"""The SEV-SNP report, DER certificates, certificate tables, HCL reports and evidence JSON.

Seeds are genuine AMD material (reports and VCEKs from real hardware, the package's
pinned ARK/ASK chains) and an emulated chip's, so the mutations reach the signature,
chain, TCB and binding checks behind the parsers, not only the size check in front.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import struct
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobruntime.attestation import der
from jobruntime.attestation.appraise import appraise
from jobruntime.attestation.certs import (
    AmdCertificate,
    EndorsementExtensions,
    ProductChain,
    certificates_pem,
    load_certificates,
)
from jobruntime.attestation.emulated import EmulatedTee
from jobruntime.attestation.errors import CertificateError, ReportDataError
from jobruntime.attestation.policy import NoDebug
from jobruntime.attestation.product import Product
from jobruntime.attestation.providers.azure_vtpm import HclReport, fetch_vcek_chain
from jobruntime.attestation.providers.certificate_table import (
    ARK,
    ASK,
    VCEK,
    build_certificate_table,
    certificates_from_table,
    parse_certificate_table,
)
from jobruntime.attestation.providers.emulated import EmulatedProvider
from jobruntime.attestation.providers.evidence import Evidence, expected_report_data
from jobruntime.attestation.report import REPORT_SIZE, AttestationReport, SigningKey, field_offsets
from jobruntime.attestation.roots import amd_chains
from jobruntime.attestation.verify import AttestationVerifier
from jobruntime.errors import AttestationError
from tests.fuzz.support import Refused, byte_mutation, dump, json_inputs, mutated_tree, typed

# cryptography warns about out-of-spec name attributes the mutations make; they are the point.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DATA = Path(__file__).parents[1] / "attestation" / "data"
BINDING = hashlib.sha512(b"fuzz binding").digest()


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


class AcceptAll:
    """No policy opinion: the mutations are judged by steps 1-3 alone."""

    def verify(self, report: AttestationReport) -> None:
        return None


@cache
def tee() -> EmulatedTee:
    return EmulatedTee.create(Product.GENOA)


GENUINE_REPORTS = ("milan_v2_report.bin", "genoa_v3_report.bin", "milan_vlek_v3_report.bin")
GENUINE_CERTS = ("milan_vcek.der", "genoa_vcek.pem", "milan_vlek.der", "turin_vcek.der")


def emulated_report() -> bytes:
    return tee().report(report_data=BINDING, version=5)


def reports() -> list[bytes]:
    return [data(name) for name in GENUINE_REPORTS] + [emulated_report()]


def certificates() -> list[bytes]:
    """DER of every certificate the tests can get: AMD's, genuine VCEKs, the emulator's."""
    found = [data(n) for n in ("milan_vcek.der", "milan_vlek.der", "turin_vcek.der")]
    found += [c.der for c in load_certificates(data("genoa_vcek.pem"))]
    for chain in amd_chains():
        found += [chain.ark.der, chain.ask.der]
    found += [tee().vcek.der, tee().chain.ask.der]
    return found


# --- structure-aware mutations ------------------------------------------------------------


@st.composite
def report_mutation(draw: st.DrawFn, report: bytes) -> bytes:
    """A field of the report set to an edge value (the rest unchanged), or bytes mutated."""
    if draw(st.booleans()):
        return draw(byte_mutation(report))
    offsets = list(field_offsets().values())
    offset, size = draw(st.sampled_from([*offsets, (0x04C, 4), (0x18B, 21), (0x330, 16)]))
    value = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 7, 0x80, 0xFF, -1]))
    filled = (value % (1 << (8 * size))).to_bytes(size, "little")
    return report[:offset] + filled + report[offset + size :]


def tlvs(data: bytes) -> list[der.Tlv]:
    """Every DER element that parses, outermost first (constructed ones are descended)."""
    found: list[der.Tlv] = []
    spans = [(0, len(data))]
    while spans:
        position, end = spans.pop()
        while position < end:
            try:
                element = der.read_tlv(data, position, end)
            except CertificateError:
                break
            found.append(element)
            if element.tag & 0x20:
                spans.append((element.content_start, element.end))
            position = element.end
    return found


@st.composite
def der_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One element's tag, length or content changed: declared lengths up to 4 GiB."""
    elements = tlvs(data)
    if not elements or draw(st.integers(0, 3)) == 0:
        return draw(byte_mutation(data))
    e = draw(st.sampled_from(elements))
    head, content, tail = data[: e.start], data[e.content_start : e.end], data[e.end :]
    how = draw(st.sampled_from(["length", "tag", "content", "empty", "twice", "flip"]))
    if how == "length":
        huge = [b"\x80", b"\x84\xff\xff\xff\xff", b"\x85\x01\x00\x00\x00\x00", b"\x00"]
        length = draw(st.sampled_from(huge))
        return head + bytes([data[e.start]]) + length + content + tail
    if how == "tag":
        tag = draw(st.sampled_from([0x00, 0x02, 0x03, 0x04, 0x05, 0x16, 0x1F, 0x30, 0xA0, 0xFF]))
        return head + bytes([tag]) + data[e.start + 1 :]
    if how == "content":
        return head + der.encode_tlv(data[e.start], draw(st.binary(max_size=80))) + tail
    if how == "empty":
        return head + der.encode_tlv(data[e.start], b"") + tail
    if how == "twice":
        return head + data[e.start : e.end] * 2 + tail
    return data[: e.content_start] + draw(byte_mutation(content)) + tail  # same framing, mostly


def pem(der_bytes: bytes) -> bytes:
    return certificates_pem([AmdCertificate.from_der(der_bytes)]).encode()


@st.composite
def certificate_inputs(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(certificates()))
    mutated = draw(der_mutation(seed))
    form = draw(st.sampled_from(["der", "pem", "pem-bytes", "junk"]))
    if form == "der":
        return mutated
    body = base64.b64encode(mutated)
    if form == "pem":
        return b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"
    if form == "pem-bytes":
        return draw(byte_mutation(pem(seed)))
    return b"-----BEGIN CERTIFICATE-----" + draw(st.binary(max_size=200)) + b"-----END"


# --- the report ---------------------------------------------------------------------------


def test_the_seeds_are_accepted() -> None:
    for report in reports():
        assert AttestationReport.parse(report).serialize() == report
    for cert in certificates():
        assert AmdCertificate.from_der(cert).der == cert


@given(
    st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE),
        st.sampled_from(reports()).flatmap(report_mutation),
    )
)
def test_report_parse(report: bytes) -> None:
    """Any bytes: a report that serializes back to exactly them, or a typed error."""
    result = typed(AttestationReport.parse, report)
    if isinstance(result, Refused):
        assert isinstance(result.error, AttestationError)
    else:
        assert result.serialize() == report
        typed(lambda: result.product)


@given(st.sampled_from(GENUINE_REPORTS[:2]).flatmap(lambda n: report_mutation(data(n))))
def test_genuine_report_verification(report: bytes) -> None:
    """Mutated genuine reports against AMD's pinned roots: steps 1-3 and a policy."""
    product = Product.MILAN if report[:1] == b"\x02" else Product.GENOA
    vcek = data("milan_vcek.der" if product is Product.MILAN else "genoa_vcek.pem")
    for policy in (AcceptAll(), NoDebug()):
        verifier = AttestationVerifier(amd_chains(), product, policy)
        typed(verifier.verify, report, vcek)


# --- certificates -------------------------------------------------------------------------


def _inspect(cert: AmdCertificate) -> None:
    """What verification reads off a loaded certificate, all of it."""
    _ = (cert.subject_cn, cert.organization, cert.is_emulated, cert.serial_number)
    _ = (cert.fingerprint, cert.valid_at(datetime.now(UTC)), cert.to_pem())
    for chain in (*amd_chains(), tee().chain):
        cert.is_issued_by(chain.ask)
    for product in Product:
        with contextlib.suppress(CertificateError):
            EndorsementExtensions.of(cert, product)


@given(certificate_inputs())
def test_load_certificates(data: bytes) -> None:
    loaded = typed(load_certificates, data)
    if isinstance(loaded, Refused):
        assert isinstance(loaded.error, CertificateError)
        return
    for cert in loaded:
        typed(_inspect, cert)
        typed(cert.public_key)


@given(st.one_of(st.sampled_from(certificates()).flatmap(der_mutation), st.binary(max_size=64)))
def test_der_walker(data: bytes) -> None:
    """The hand-written DER code: lengths up to 4 GiB are declared, never allocated."""
    typed(der.split_certificate, data)
    typed(der.replace_serial, data, 0)
    typed(der.decode_integer, data)
    typed(der.decode_ia5string, data)


@given(st.sampled_from([p.to_pem().encode() for p in amd_chains()]).flatmap(byte_mutation))
def test_product_chain_from_pem(data: bytes) -> None:
    typed(ProductChain.from_pem, data)


@given(certificate_inputs())
def test_a_mutated_vcek_with_a_genuine_report(cert: bytes) -> None:
    """The endorsement certificate is the attacker's: whatever it holds, a typed refusal."""
    verifier = AttestationVerifier(amd_chains(), Product.MILAN, AcceptAll())
    typed(verifier.verify, data("milan_v2_report.bin"), cert)


# --- certificate tables, HCL reports, THIM answers ------------------------------------------


def table() -> bytes:
    t = tee()
    return build_certificate_table(
        [(VCEK, t.vcek.der), (ASK, t.chain.ask.der), (ARK, t.chain.ark.der)]
    )


@st.composite
def table_mutation(draw: st.DrawFn) -> bytes:
    data = table()
    if draw(st.booleans()):
        return draw(byte_mutation(data))
    entry = draw(st.integers(0, 3)) * 24
    field = draw(st.sampled_from([16, 20]))  # offset or length
    value = draw(st.sampled_from([0, 1, 24, 0x7FFFFFFF, 0xFFFFFFFF, len(data), len(data) + 1]))
    return data[: entry + field] + struct.pack("<I", value) + data[entry + field + 4 :]


@given(table_mutation())
def test_certificate_table(data: bytes) -> None:
    typed(parse_certificate_table, data)
    for key in (SigningKey.VCEK, SigningKey.VLEK):
        typed(certificates_from_table, data, key)


@given(
    st.sampled_from(["azure_hcl_milan.bin", "azure_hcl_genoa.bin"]).flatmap(
        lambda name: byte_mutation((DATA / "providers" / name).read_bytes())
    )
)
def test_hcl_report(blob: bytes) -> None:
    typed(HclReport.parse, blob)


def thim_answer() -> bytes:
    return dump({"vcekCert": tee().vcek.to_pem(), "certificateChain": tee().chain.to_pem()})


@given(
    st.one_of(
        json_inputs({"vcekCert": "", "certificateChain": ""}),
        st.builds(thim_answer).flatmap(byte_mutation),
    )
)
def test_thim_certification_answer(body: bytes) -> None:
    """The Azure IMDS answer (VCEK and chain) as the vTPM provider reads it."""
    typed(fetch_vcek_chain, lambda url, headers: body)


# --- evidence JSON and appraisal ------------------------------------------------------------


def evidence_json() -> dict[str, Any]:
    return EmulatedProvider(tee()).collect(BINDING).to_json()


def runtime_claims() -> dict[str, Any]:
    return {"keys": [], "vm-configuration": {"secure-boot": True}, "user-data": BINDING.hex()}


@given(json_inputs(evidence_json(), keys=["kind", "report"]))
def test_evidence_from_json(body: bytes) -> None:
    """``AttestRequest.evidence``, after the control plane parsed the request JSON."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: the request never reaches ``Evidence.from_json``
    typed(Evidence.from_json, obj)


@st.composite
def evidences(draw: st.DrawFn) -> Any:
    """Emulated evidence whose JSON, report, certificates or runtime data were changed."""
    obj = evidence_json()
    how = draw(st.sampled_from(["tree", "report", "certificates", "runtime"]))
    if how == "tree":
        return draw(mutated_tree(obj))
    if how == "report":
        report = draw(report_mutation(base64.b64decode(obj["report"])))
        return obj | {"report": base64.b64encode(report).decode()}
    if how == "certificates":
        pem_text = draw(byte_mutation(obj["certificates"].encode()))
        return obj | {"certificates": pem_text.decode("latin-1")}
    runtime = draw(json_inputs(runtime_claims(), keys=["user-data"]))
    digest = hashlib.sha256(runtime).digest()
    report = tee().report(report_data=digest + bytes(32), version=5)
    return obj | {
        "kind": "azure-vtpm",
        "report": base64.b64encode(report).decode(),
        "runtime_data": base64.b64encode(runtime).decode(),
    }


def _appraise(obj: Any) -> Any:
    evidence = Evidence.from_json(obj)
    return appraise(evidence, BINDING, [*amd_chains(), tee().chain], allow_emulated=True)


@given(evidences())
def test_appraise_evidence(obj: Any) -> None:
    """The KMS's attest step: evidence JSON, then signature, chain, TCB, policy, binding."""
    typed(_appraise, obj)


def test_appraise_accepts_the_seed_evidence() -> None:
    assert _appraise(evidence_json()).emulated


@pytest.mark.parametrize(
    "runtime",
    [b"[" * 5000, b'{"user-data":' + b"1" * 5000 + b"}", b"\xff\xfe{}", b"[]"],
    ids=["deep", "4300-digit-int", "not-utf8", "not-an-object"],
)
def test_regression_unreadable_runtime_data_is_a_report_data_error(runtime: bytes) -> None:
    """Found by fuzzing: azure-vtpm runtime data nested past the recursion limit, or with an
    integer of more than 4300 digits, raised RecursionError or ValueError at the KMS."""
    evidence = Evidence("azure-vtpm", emulated_report(), "", runtime)
    with pytest.raises(ReportDataError):
        expected_report_data(evidence, BINDING)


def _genoa_ark() -> bytes:
    return next(c.ark.der for c in amd_chains() if c.product is Product.GENOA)


@pytest.mark.parametrize(
    ("old", "new", "last"),
    [
        (b"\x06\x03U\x04\x03\x0c", b"\x06\x03U\x04\x03\x00", True),  # subject CN: tag 0
        (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03", False),  # X.509 version 4
    ],
    ids=["subject-name-tag", "version"],
)
def test_regression_a_certificate_cryptography_parses_lazily_fails_to_load(
    old: bytes, new: bytes, last: bool
) -> None:
    """Found by fuzzing: ``cryptography`` decodes names (and checks the version) on first
    use, so a VCEK with a malformed subject loaded, then raised ValueError (TypeError,
    InvalidVersion) in the KMS when its issuer or name was first read."""
    ark = _genoa_ark()
    at = ark.rindex(old) if last else ark.index(old)
    broken = ark[:at] + new + ark[at + len(old) :]
    with pytest.raises(CertificateError):
        load_certificates(broken)


def test_regression_a_deeply_nested_thim_answer_is_a_collect_error() -> None:
    """Found by fuzzing: the IMDS answer is JSON the vTPM provider parses; nested past
    the recursion limit it raised RecursionError instead of ``attestation.collect``."""
    with pytest.raises(AttestationError) as info:
        fetch_vcek_chain(lambda url, headers: b"[" * 5000)
    assert info.value.code == "attestation.collect"
