"""Evidence providers, each against a constructed stand-in for its kernel or platform interface.

No SEV-SNP guest or Azure CVM is available here: configfs-tsm is a fake tree in
tmp_path, ``/dev/sev-guest`` an injected ioctl that reads the request from memory
and writes the firmware's response, the vTPM an injected tpm2-tools runner. Their
reports come from the emulated TEE and are verified end to end; the Azure layout
is also checked on genuine HCL reports (data/providers/SOURCES.md).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from jobruntime.attestation import (
    REPORT_SIZE,
    AttestationReport,
    AttestationVerifier,
    EmulatedTee,
    Product,
    ProductChain,
    VerifiedReport,
    errors,
    load_certificates,
)
from jobruntime.attestation.providers import (
    AzureVtpmProvider,
    CollectError,
    ConfigfsTsmProvider,
    EmulatedProvider,
    Evidence,
    EvidenceError,
    EvidenceProvider,
    HclReport,
    NoTeeError,
    SevGuestProvider,
    build_certificate_table,
    certificates_from_table,
    check_binding,
    detect,
    expected_report_data,
    load_tee,
    parse_certificate_table,
    save_tee,
)
from jobruntime.attestation.providers import certificate_table as table
from jobruntime.attestation.providers.azure_vtpm import THIM_URL
from jobruntime.attestation.providers.configfs_tsm import OsConfigfs
from jobruntime.attestation.report import SigningKey
from jobruntime.errors import AttestationError, ConfigError

from .conftest import AcceptAll, data

BINDING = bytes(range(64))
PROVIDERS_DATA = Path(__file__).parent / "data" / "providers"


def verify(tee: EmulatedTee, evidence: Evidence) -> VerifiedReport:
    """Steps 1-3 against ``tee``'s own chain, with the endorsement the evidence carries."""
    verifier = AttestationVerifier([tee.chain], tee.product, AcceptAll(), allow_emulated=True)
    return verifier.verify(evidence.report, load_certificates(evidence.certificates)[0])


def chain_table(tee: EmulatedTee, *, endorsement: uuid.UUID = table.VCEK) -> bytes:
    return build_certificate_table(
        [
            (table.ARK, tee.chain.ark.der),
            (endorsement, tee.vcek.der),  # hosts may order entries as they like
            (table.ASK, tee.chain.ask.der),
        ]
    )


# --- Evidence and its JSON form -------------------------------------------------------


@pytest.fixture(scope="module")
def evidence(tee: EmulatedTee) -> Evidence:
    return EmulatedProvider(tee).collect(BINDING)


def test_evidence_round_trips_through_json(evidence: Evidence) -> None:
    encoded = json.loads(json.dumps(evidence.to_json()))
    assert Evidence.from_json(encoded) == evidence
    assert encoded["runtime_data"] is None


def _mutations(good: Mapping[str, object]) -> list[object]:
    big = "A" * (4 * 64 * 1024 // 3 + 8)
    return [
        [good],
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "report"},
        {**good, "kind": "tdx"},
        {**good, "report": "not base64!"},
        {**good, "report": 5},
        {**good, "report": "AAAA"},  # 3 bytes
        {**good, "certificates": b"pem"},
        {**good, "certificates": "garbage"},
        {**good, "certificates": "x" * (64 * 1024 + 1)},
        {**good, "runtime_data": "e30="},  # runtime data on sev-snp/emulated
        {**good, "kind": "azure-vtpm"},  # azure without runtime data
        {**good, "kind": "azure-vtpm", "runtime_data": big},
    ]


def test_malformed_evidence_is_refused_with_one_code(evidence: Evidence) -> None:
    for bad in _mutations(evidence.to_json()):
        with pytest.raises(EvidenceError) as caught:
            Evidence.from_json(bad)
        assert caught.value.code == "attestation.evidence"
        assert isinstance(caught.value, AttestationError)


# --- binding: REPORT_DATA and the Azure runtime data -------------------------------------


def test_sev_snp_binding_is_all_of_report_data(tee: EmulatedTee, evidence: Evidence) -> None:
    report = verify(tee, evidence).report
    assert expected_report_data(evidence, BINDING) == BINDING
    check_binding(evidence, BINDING, report)
    with pytest.raises(errors.ReportDataError):
        check_binding(evidence, bytes(64), report)


def test_binding_refuses_a_report_that_is_not_the_evidence(tee: EmulatedTee) -> None:
    first, second = (EmulatedProvider(tee).collect(BINDING) for _ in range(2))
    with pytest.raises(errors.ReportDataError, match="not the evidence's report"):
        check_binding(first, BINDING, AttestationReport.parse(second.report))


def runtime_data(user_data: str | None) -> bytes:
    claims: dict[str, object] = {
        "keys": [{"kid": "HCLAkPub", "kty": "RSA", "e": "AQAB", "n": "tYV"}],
        "vm-configuration": {"secure-boot": True, "tpm-enabled": True},
    }
    if user_data is not None:
        claims["user-data"] = user_data
    return json.dumps(claims, separators=(",", ":")).encode()


def azure_evidence(tee: EmulatedTee, runtime: bytes, digest: bytes | None = None) -> Evidence:
    digest = hashlib.sha256(runtime).digest() if digest is None else digest
    report = tee.report(report_data=digest + bytes(32))
    return Evidence("azure-vtpm", report, tee.vcek.to_pem(), runtime)


@pytest.mark.parametrize("case", [str.upper, str.lower])
def test_azure_binding_goes_through_the_runtime_data(
    tee: EmulatedTee, case: Callable[[str], str]
) -> None:
    evidence = azure_evidence(tee, runtime_data(case(BINDING.hex())))
    report = verify(tee, evidence).report
    assert expected_report_data(evidence, BINDING) == report.report_data[:32]
    check_binding(evidence, BINDING, report)


@pytest.mark.parametrize(
    ("user_data", "digest", "message"),
    [
        (BINDING.hex(), bytes(32), "report_data does not match"),
        (bytes(64).hex(), None, "user-data does not match"),
        (None, None, "no 64-byte hex user-data"),
        ("zz" * 64, None, "not hex"),
        (BINDING.hex()[:-2], None, "no 64-byte hex user-data"),
    ],
)
def test_azure_binding_refusals(
    tee: EmulatedTee, user_data: str | None, digest: bytes | None, message: str
) -> None:
    evidence = azure_evidence(tee, runtime_data(user_data), digest)
    with pytest.raises(errors.ReportDataError, match=message) as caught:
        check_binding(evidence, BINDING, AttestationReport.parse(evidence.report))
    assert caught.value.code == "attestation.report_data"


@pytest.mark.parametrize("runtime", [b"[1]", b"\xff", b'{"user-data":"00","user-data":"01"}'])
def test_azure_runtime_data_must_be_one_json_object(tee: EmulatedTee, runtime: bytes) -> None:
    evidence = azure_evidence(tee, runtime)
    with pytest.raises(errors.ReportDataError):
        expected_report_data(evidence, BINDING)


# --- the certificate table -----------------------------------------------------------------


def test_certificate_guids_are_rfc4122_bytes_on_the_wire() -> None:
    assert table.VCEK.bytes.hex() == "63da758de6644564adc5f4b93be8accd"
    assert table.ASK.bytes.hex() == "4ab7b379bbac4fe4a02f05aef327c782"
    assert table.ARK.bytes.hex() == "c0b406a4a803495297433fb6014cd0ae"
    assert table.VLEK.bytes.hex() == "a8074bc2a25a483eaae639c045a0b8a1"


def test_certificate_table_puts_the_endorsement_first(tee: EmulatedTee) -> None:
    pem = certificates_from_table(chain_table(tee), SigningKey.VCEK)
    names = [c.subject_cn for c in load_certificates(pem)]
    assert names == [tee.vcek.subject_cn, tee.chain.ask.subject_cn, tee.chain.ark.subject_cn]
    # A report signed by a VLEK needs the VLEK entry; without it nothing useful is sent.
    vlek = chain_table(tee, endorsement=table.VLEK)
    assert load_certificates(certificates_from_table(vlek, SigningKey.VLEK))[0].der == tee.vcek.der
    assert certificates_from_table(vlek, SigningKey.VCEK) == ""
    assert certificates_from_table(b"", SigningKey.VCEK) == ""
    assert certificates_from_table(bytes(0x4000), SigningKey.VCEK) == ""


def test_certificate_table_accepts_little_endian_guids_and_pem(tee: EmulatedTee) -> None:
    entry = struct.pack("<16sII", table.VCEK.bytes_le, 48, len(tee.vcek.to_pem()))
    raw = entry + bytes(24) + tee.vcek.to_pem().encode()
    assert parse_certificate_table(raw) == {table.VCEK: tee.vcek.to_pem().encode()}


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack("<16sII", table.VCEK.bytes, 48, 100) + bytes(24),  # points past the end
        struct.pack("<16sII", table.VCEK.bytes, 24, 4) + b"abcd",  # no terminator
        struct.pack("<16sII", table.VCEK.bytes, 48, 4) + bytes(24) + b"abcd",  # not a cert
    ],
)
def test_malformed_certificate_tables(raw: bytes) -> None:
    with pytest.raises(CollectError):
        certificates_from_table(raw, SigningKey.VCEK)


# --- configfs-tsm ----------------------------------------------------------------------------


class FakeTsm(OsConfigfs):
    """configfs-tsm semantics on a tmp_path tree: mkdir creates the attributes, every
    write bumps ``generation``, and reading ``outblob`` makes the report from ``inblob``
    (and ``privlevel``) with the emulated TEE; ``intrusions`` requests see a foreign write."""

    def __init__(self, tee: EmulatedTee, aux: bytes = b"", provider: str = "sev_guest") -> None:
        self.tee, self.aux, self.provider = tee, aux, provider
        self.intrusions = 0
        self.entries: list[Path] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.entries.append(path)
        for name in ("inblob", "privlevel", "outblob", "auxblob"):
            (path / name).write_bytes(b"")
        (path / "provider").write_text(f"{self.provider}\n")
        (path / "generation").write_text("0\n")

    def rmdir(self, path: Path) -> None:
        shutil.rmtree(path)  # configfs removes the attributes with the entry

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        self._bump(path.parent)

    def read(self, path: Path) -> bytes:
        if path.name == "outblob":
            if self.intrusions:
                self.intrusions -= 1
                self._bump(path.parent)
            vmpl = (path.parent / "privlevel").read_text() or "0"
            inblob = (path.parent / "inblob").read_bytes()
            return self.tee.report(report_data=inblob, vmpl=int(vmpl))
        return self.aux if path.name == "auxblob" else super().read(path)

    @staticmethod
    def _bump(entry: Path) -> None:
        generation = entry / "generation"
        generation.write_text(f"{int(generation.read_text()) + 1}\n")


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    path = tmp_path / "report"
    path.mkdir()
    return path


def test_configfs_tsm_collects_verifiable_evidence(tee: EmulatedTee, report_dir: Path) -> None:
    fake = FakeTsm(tee, aux=chain_table(tee))
    evidence = ConfigfsTsmProvider(report_dir, privlevel=2, io=fake).collect(BINDING)
    verified = verify(tee, evidence)
    assert evidence.kind == "sev-snp"
    assert verified.report.report_data == BINDING
    assert verified.report.vmpl == 2
    assert len(load_certificates(evidence.certificates)) == 3
    assert list(report_dir.iterdir()) == []  # the entry is removed


def test_configfs_tsm_without_certificates(tee: EmulatedTee, report_dir: Path) -> None:
    evidence = ConfigfsTsmProvider(report_dir, io=FakeTsm(tee)).collect(BINDING)
    assert evidence.certificates == ""
    assert AttestationReport.parse(evidence.report).vmpl == 0


def test_configfs_tsm_retries_once_after_a_foreign_write(
    tee: EmulatedTee, report_dir: Path
) -> None:
    fake = FakeTsm(tee)
    fake.intrusions = 1
    ConfigfsTsmProvider(report_dir, io=fake).collect(BINDING)
    assert len(fake.entries) == 2
    fake.intrusions = 2
    with pytest.raises(CollectError, match="twice"):
        ConfigfsTsmProvider(report_dir, io=fake).collect(BINDING)
    assert list(report_dir.iterdir()) == []


def test_configfs_tsm_refuses_another_provider(tee: EmulatedTee, report_dir: Path) -> None:
    provider = ConfigfsTsmProvider(report_dir, io=FakeTsm(tee, provider="tdx_guest"))
    with pytest.raises(CollectError, match="tdx_guest"):
        provider.collect(BINDING)
    assert "provider is 'tdx_guest'" in str(provider.unavailable())
    assert list(report_dir.iterdir()) == []


def test_configfs_tsm_on_a_plain_directory_fails_typed(report_dir: Path) -> None:
    with pytest.raises(CollectError, match="configfs-tsm request"):
        ConfigfsTsmProvider(report_dir).collect(BINDING)
    assert list(report_dir.iterdir()) == []


# --- /dev/sev-guest ------------------------------------------------------------------------


class FakeSevGuest:
    """The kernel and firmware behind the ioctl: reads the request where the
    ``snp_guest_request_ioctl`` points, writes MSG_REPORT_RSP and the certificates."""

    def __init__(self, tee: EmulatedTee, aux: bytes = b"") -> None:
        self.tee, self.aux = tee, aux
        self.status, self.size, self.exitinfo2 = 0, REPORT_SIZE, 0
        self.numbers: list[int] = []
        self.request = b""

    def __call__(self, fd: int, number: int, arg: bytearray) -> int:
        self.numbers.append(number)
        assert len(arg) == 32
        version, request, response, _ = struct.unpack("<B7xQQQ", arg)
        assert version == 1
        self.request = ctypes.string_at(request, 112 if number & 0xFF == 2 else 96)
        if self.exitinfo2:
            struct.pack_into("<Q", arg, 24, self.exitinfo2)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        if number & 0xFF == 2:
            certs, length = struct.unpack_from("<QI", self.request, 96)
            assert length == 0x4000
            ctypes.memmove(certs, self.aux, len(self.aux))
        vmpl = int.from_bytes(self.request[64:68], "little")
        report = self.tee.report(report_data=self.request[:64], vmpl=vmpl)
        body = struct.pack("<II24x", self.status, self.size) + report
        ctypes.memmove(response, body, len(body))
        return 0


@pytest.fixture
def device(tmp_path: Path) -> Path:
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return path


def test_sev_guest_extended_report(tee: EmulatedTee, device: Path) -> None:
    fake = FakeSevGuest(tee, aux=chain_table(tee))
    evidence = SevGuestProvider(device, vmpl=1, ioctl=fake).collect(BINDING)
    assert fake.numbers == [0xC0205302]  # _IOWR('S', 0x2, struct snp_guest_request_ioctl)
    assert fake.request[:96] == BINDING + (1).to_bytes(4, "little") + bytes(28)
    assert fake.request[104:] == (0x4000).to_bytes(4, "little") + bytes(4)
    verified = verify(tee, evidence)
    assert (verified.report.report_data, verified.report.vmpl) == (BINDING, 1)


def test_sev_guest_plain_report(tee: EmulatedTee, device: Path) -> None:
    fake = FakeSevGuest(tee)
    evidence = SevGuestProvider(device, extended=False, ioctl=fake).collect(BINDING)
    assert fake.numbers == [0xC0205300]  # _IOWR('S', 0x0, struct snp_guest_request_ioctl)
    assert fake.request == BINDING + bytes(32)
    assert evidence.certificates == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("status", 0x16, "status 0x16 \\(INVALID_PARAM\\)"),
        ("size", 0x400, "1024-byte report"),
        ("exitinfo2", 1 << 32 | 0x27, "firmware error 0x27, VMM error 0x1 \\(INVALID_LEN\\)"),
    ],
)
def test_sev_guest_failures_are_typed(
    tee: EmulatedTee, device: Path, field: str, value: int, message: str
) -> None:
    fake = FakeSevGuest(tee)
    setattr(fake, field, value)
    with pytest.raises(CollectError, match=message):
        SevGuestProvider(device, ioctl=fake).collect(BINDING)


# --- the Azure vTPM ------------------------------------------------------------------------


class FakeVtpm:
    """tpm2-tools on an Azure CVM: NV 0x01400002 takes user data, and the paravisor
    answers NV 0x01400001 with an HCL report over it (unless ``stale``)."""

    def __init__(self, tee: EmulatedTee, device: Path, *, defined: bool = False) -> None:
        self.tee, self.device, self.defined = tee, device, defined
        self.stale = False
        self.user_data = bytes(64)
        self.commands: list[list[str]] = []

    def __call__(self, args: Sequence[str], stdin: bytes | None) -> bytes:
        tool, tcti, *rest = args
        assert tcti == f"--tcti=device:{self.device}"
        self.commands.append([tool, *rest])
        if tool == "tpm2_nvreadpublic" and rest == ["0x01400002"] and not self.defined:
            raise CollectError("tpm2_nvreadpublic failed (1): the handle is not correct")
        if tool == "tpm2_nvdefine":
            self.defined = True
        if tool == "tpm2_nvwrite" and not self.stale:
            assert stdin is not None and len(stdin) == 64
            self.user_data = stdin
        if tool == "tpm2_nvread":
            runtime = runtime_data(self.user_data.hex().upper())
            report = self.tee.report(report_data=hashlib.sha256(runtime).digest() + bytes(32))
            return HclReport(report, runtime).serialize().ljust(2600, b"\0")
        return b""


def thim(tee: EmulatedTee) -> Callable[[str, Mapping[str, str]], bytes]:
    def get(url: str, headers: Mapping[str, str]) -> bytes:
        assert (url, dict(headers)) == (THIM_URL, {"Metadata": "true"})
        chain = tee.chain.to_pem()
        return json.dumps({"vcekCert": tee.vcek.to_pem(), "certificateChain": chain}).encode()

    return get


def test_azure_vtpm_collects_bound_evidence(tee: EmulatedTee, tmp_path: Path) -> None:
    fake = FakeVtpm(tee, tmp_path / "tpmrm0")
    provider = AzureVtpmProvider(tmp_path / "tpmrm0", runner=fake, get=thim(tee))
    evidence = provider.collect(BINDING)
    assert fake.commands == [
        ["tpm2_nvreadpublic", "0x01400002"],
        ["tpm2_nvdefine", "-C", "o", "-s", "64", "0x01400002"],
        ["tpm2_nvwrite", "-C", "o", "-i", "-", "0x01400002"],
        ["tpm2_nvread", "-C", "o", "0x01400001"],
    ]
    verified = verify(tee, Evidence.from_json(evidence.to_json()))
    check_binding(evidence, BINDING, verified.report)
    assert len(load_certificates(evidence.certificates)) == 3
    provider.collect(BINDING)  # the index now exists: no second nvdefine
    assert [c[0] for c in fake.commands].count("tpm2_nvdefine") == 1


def test_azure_vtpm_refuses_a_stale_report(tee: EmulatedTee, tmp_path: Path) -> None:
    fake = FakeVtpm(tee, tmp_path / "tpmrm0", defined=True)
    fake.stale = True
    with pytest.raises(errors.ReportDataError):
        AzureVtpmProvider(tmp_path / "tpmrm0", runner=fake, get=None).collect(BINDING)


def test_thim_response_must_hold_certificates(tee: EmulatedTee, tmp_path: Path) -> None:
    fake = FakeVtpm(tee, tmp_path / "tpmrm0", defined=True)
    provider = AzureVtpmProvider(tmp_path / "tpmrm0", runner=fake, get=lambda u, h: b"{}")
    with pytest.raises(CollectError, match="THIM"):
        provider.collect(BINDING)


def test_hcl_report_round_trips(tee: EmulatedTee) -> None:
    hcl = HclReport(tee.report(), runtime_data(None))
    assert HclReport.parse(hcl.serialize() + bytes(100)) == hcl


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"HCLB", "no HCLA header"),
        (16, (1).to_bytes(4, "little"), "status is 0x1"),
        (0x4C8, (4).to_bytes(4, "little"), "type 4"),  # TDX
        (0x4CC, (2).to_bytes(4, "little"), "hash 2"),  # SHA-384
        (0x4D0, (10**6).to_bytes(4, "little"), "inconsistent"),
    ],
)
def test_malformed_hcl_reports(tee: EmulatedTee, offset: int, value: bytes, message: str) -> None:
    blob = bytearray(HclReport(tee.report(), runtime_data(None)).serialize())
    blob[offset : offset + len(value)] = value
    with pytest.raises(CollectError, match=message):
        HclReport.parse(bytes(blob))


def test_genuine_genoa_hcl_report(amd_chains: dict[Product, ProductChain]) -> None:
    """An Azure paravisor's HCL report: the layout, the digest and the user-data binding."""
    hcl = HclReport.parse((PROVIDERS_DATA / "azure_hcl_genoa.bin").read_bytes())
    assert hcl.report == data("genoa_v3_report.bin")
    evidence = Evidence("azure-vtpm", hcl.report, data("genoa_vcek.pem").decode(), hcl.runtime_data)
    verifier = AttestationVerifier(amd_chains.values(), Product.GENOA, AcceptAll())
    verified = verifier.verify(evidence.report, evidence.certificates)
    check_binding(evidence, bytes(64), verified.report)  # the VM wrote 64 zero bytes
    with pytest.raises(errors.ReportDataError):
        check_binding(evidence, BINDING, verified.report)


def test_genuine_milan_hcl_report_has_no_user_data() -> None:
    hcl = HclReport.parse((PROVIDERS_DATA / "azure_hcl_milan.bin").read_bytes())
    report = AttestationReport.parse(hcl.report)
    assert report.report_data == hashlib.sha256(hcl.runtime_data).digest() + bytes(32)
    with pytest.raises(errors.ReportDataError, match="user-data"):
        check_binding(Evidence("azure-vtpm", hcl.report, "", hcl.runtime_data), BINDING, report)


# --- every provider takes exactly 64 bytes ---------------------------------------------------


def test_report_data_must_be_64_bytes(tee: EmulatedTee, report_dir: Path, device: Path) -> None:
    providers: list[EvidenceProvider] = [
        EmulatedProvider(tee),
        ConfigfsTsmProvider(report_dir, io=FakeTsm(tee)),
        SevGuestProvider(device, ioctl=FakeSevGuest(tee)),
        AzureVtpmProvider(device, runner=FakeVtpm(tee, device), get=None),
    ]
    for provider in providers:
        for wrong in (bytes(32), bytes(65), bytearray(64)):
            with pytest.raises(ValueError, match="64 bytes"):
                provider.collect(wrong)  # type: ignore[arg-type]  # bytearray on purpose


# --- detection ---------------------------------------------------------------------------------


def test_detect_without_a_tee_names_every_path(tmp_path: Path) -> None:
    with pytest.raises(NoTeeError) as caught:
        detect(
            tsm_report_dir=tmp_path / "tsm",
            sev_guest_device=tmp_path / "sev-guest",
            tpm_device=tmp_path / "tpmrm0",
        )
    assert caught.value.code == "attestation.no_tee"
    for name in ("tsm", "sev-guest", "tpmrm0"):
        assert str(tmp_path / name) in caught.value.message


def test_detect_prefers_configfs_tsm(tee: EmulatedTee, report_dir: Path, device: Path) -> None:
    found = detect(tsm_report_dir=report_dir, configfs=FakeTsm(tee), sev_guest_device=device)
    assert isinstance(found, ConfigfsTsmProvider)
    assert list(report_dir.iterdir()) == []  # the probe entry is gone


def test_detect_skips_a_configfs_tsm_without_sev_guest(
    tee: EmulatedTee, report_dir: Path, device: Path
) -> None:
    fake = FakeTsm(tee, provider="tdx_guest")
    found = detect(tsm_report_dir=report_dir, configfs=fake, sev_guest_device=device)
    assert isinstance(found, SevGuestProvider)


def test_detect_falls_back_to_the_azure_vtpm(
    tee: EmulatedTee, report_dir: Path, tmp_path: Path
) -> None:
    tpm = tmp_path / "tpmrm0"
    tpm.write_bytes(b"")
    missing = tmp_path / "sev-guest"
    found = detect(
        tsm_report_dir=report_dir,  # a plain directory: no provider attribute
        sev_guest_device=missing,
        tpm_device=tpm,
        tpm_runner=FakeVtpm(tee, tpm),
    )
    assert isinstance(found, AzureVtpmProvider)

    def no_index(args: Sequence[str], stdin: bytes | None) -> bytes:
        raise CollectError("tpm2_nvreadpublic failed (1)")

    with pytest.raises(NoTeeError, match="NV index 0x01400001 not readable"):
        detect(
            tsm_report_dir=report_dir, sev_guest_device=missing, tpm_device=tpm, tpm_runner=no_index
        )


# --- one emulated platform shared through a directory -----------------------------------------


def test_saved_tee_reloads_and_signs_under_the_same_chain(tee: EmulatedTee, tmp_path: Path) -> None:
    directory = tmp_path / "tee"
    save_tee(tee, directory)
    assert stat.S_IMODE((directory / "vcek-key.pem").stat().st_mode) == 0o600
    loaded = load_tee(directory)
    assert (loaded.product, loaded.tcb, loaded.chip_id) == (tee.product, tee.tcb, tee.chip_id)
    evidence = EmulatedProvider(loaded, measurement=b"m" * 48).collect(BINDING)
    verified = verify(tee, evidence)  # the original chain accepts the reloaded chip
    assert verified.emulated and verified.report.measurement == b"m" * 48
    with pytest.raises(ConfigError, match="already holds"):
        save_tee(tee, directory)


def test_turin_tee_reloads_with_its_short_chip_id(turin_tee: EmulatedTee, tmp_path: Path) -> None:
    save_tee(turin_tee, tmp_path)
    assert load_tee(tmp_path).chip_id == turin_tee.chip_id


def test_load_tee_refuses_a_key_of_another_chip(
    tee: EmulatedTee, other_tee: EmulatedTee, tmp_path: Path
) -> None:
    save_tee(tee, tmp_path / "a")
    save_tee(other_tee, tmp_path / "b")
    shutil.copy(tmp_path / "b" / "vcek-key.pem", tmp_path / "a" / "vcek-key.pem")
    with pytest.raises(ConfigError, match="not the VCEK's"):
        load_tee(tmp_path / "a")
    with pytest.raises(ConfigError, match="does not hold"):
        load_tee(tmp_path / "missing")
