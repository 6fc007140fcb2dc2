"""SEV-SNP evidence on an Azure confidential VM, through the paravisor's vTPM.

Azure hides ``/dev/sev-guest`` from the guest; its paravisor (HCL) asks the
firmware for the report instead. The guest writes its 64 bytes to NV index
0x01400002; the paravisor puts them, hex, in the ``user-data`` of a runtime-data
JSON, requests a report with REPORT_DATA[0:32] = SHA-256(runtime data) and stores
the "HCL report" in NV index 0x01400001 (the tpm2-tools commands are those of
Azure's guest-attestation samples). Its layout, confirmed on the genuine reports
in tests/attestation/data/providers (little-endian u32s)::

    0x000  header: "HCLA", version, report_size (whole HCL report), request_type,
           status, 3 reserved                                           32 bytes
    0x020  hw report: the ATTESTATION_REPORT                            0x4A0 bytes
    0x4C0  IGVM request data: data_size (= 20 + variable_data_size), version,
           report_type (2 = SEV-SNP), hash_type (1 = SHA-256), variable_data_size
    0x4D4  runtime data (JSON), variable_data_size bytes; zero padding to the NV size

The VCEK comes from the Azure IMDS (THIM) endpoint, never from the report.
This machine is no Azure VM: the code is tested with an injected command runner
and HTTP getter, constructed HCL reports and a genuine one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from jobruntime.attestation.certs import certificates_pem, load_certificates
from jobruntime.attestation.providers.errors import CollectError
from jobruntime.attestation.providers.evidence import (
    Evidence,
    EvidenceKind,
    check_binding,
    check_report_data,
)
from jobruntime.attestation.report import REPORT_SIZE, AttestationReport
from jobruntime.errors import AttestationError
from jobruntime.netget import GetError, get

TPM_DEVICE = Path("/dev/tpmrm0")
REPORT_INDEX = "0x01400001"
USER_DATA_INDEX = "0x01400002"
THIM_URL = "http://169.254.169.254/metadata/THIM/amd/certification"

SIGNATURE = b"HCLA"
_HEADER = struct.Struct("<4sIIII12x")
_REQUEST = struct.Struct("<IIIII")
_REQUEST_OFFSET = _HEADER.size + REPORT_SIZE
_RUNTIME_OFFSET = _REQUEST_OFFSET + _REQUEST.size
SNP_REPORT_TYPE = 2
SHA256 = 1

# A command line and its stdin -> its stdout; raises CollectError when it fails.
Runner = Callable[[Sequence[str], bytes | None], bytes]
# A URL and headers -> the response body; raises CollectError when it fails.
HttpGet = Callable[[str, Mapping[str, str]], bytes]


@dataclass(frozen=True)
class HclReport:
    """The parts of an HCL report a verifier needs (``version`` is kept, not interpreted)."""

    report: bytes
    runtime_data: bytes
    version: int = 2

    @classmethod
    def parse(cls, blob: bytes) -> HclReport:
        if len(blob) < _RUNTIME_OFFSET or blob[:4] != SIGNATURE:
            raise CollectError("NV index does not hold an HCL report (no HCLA header)")
        _, version, total, _, status = _HEADER.unpack_from(blob)
        size, _, report_type, hash_type, runtime_size = _REQUEST.unpack_from(blob, _REQUEST_OFFSET)
        if status:
            raise CollectError(f"HCL report status is {status:#x}")
        if report_type != SNP_REPORT_TYPE or hash_type != SHA256:
            raise CollectError(
                f"HCL report type {report_type} hash {hash_type}: only SEV-SNP with SHA-256"
            )
        end = _RUNTIME_OFFSET + runtime_size
        if size != _REQUEST.size + runtime_size or not end <= total <= len(blob):
            raise CollectError("HCL report sizes are inconsistent")
        report = blob[_HEADER.size : _REQUEST_OFFSET]
        return cls(report, blob[_RUNTIME_OFFSET:end], version)

    def serialize(self) -> bytes:
        """The bytes the paravisor writes (without the NV index's zero padding)."""
        total = _RUNTIME_OFFSET + len(self.runtime_data)
        header = _HEADER.pack(SIGNATURE, self.version, total, SNP_REPORT_TYPE, 0)
        size = _REQUEST.size + len(self.runtime_data)
        request = _REQUEST.pack(size, 1, SNP_REPORT_TYPE, SHA256, len(self.runtime_data))
        return header + self.report + request + self.runtime_data


def run_tool(args: Sequence[str], stdin: bytes | None = None) -> bytes:
    """Run a tpm2-tools command; its first stderr line is the error message."""
    import subprocess  # here: a pod that finds configfs-tsm never needs it

    try:
        done = subprocess.run(list(args), input=stdin, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CollectError(f"{args[0]} could not run: {exc}") from None
    if done.returncode:
        detail = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise CollectError(f"{args[0]} failed ({done.returncode}): {detail}")
    return done.stdout


def http_get(url: str, headers: Mapping[str, str]) -> bytes:
    """GET without proxies (IMDS is link-local and must not be proxied) or redirects."""
    try:
        return get(url, headers, timeout=10)
    except GetError as exc:
        raise CollectError(str(exc)) from None


def fetch_vcek_chain(get: HttpGet = http_get) -> str:
    """VCEK then ASK and ARK, as the Azure IMDS (THIM) serves them for this host."""
    try:
        body = json.loads(get(THIM_URL, {"Metadata": "true"}))
        pem = body["vcekCert"] + body["certificateChain"]
        return certificates_pem(load_certificates(pem))
    except (ValueError, KeyError, TypeError, RecursionError, AttestationError) as exc:
        raise CollectError(f"THIM certification response is unusable: {exc}") from None


class AzureVtpmProvider:
    """Evidence from the Azure CVM vTPM; certificates from IMDS unless ``get`` is None."""

    kind: ClassVar[EvidenceKind] = "azure-vtpm"

    def __init__(
        self,
        device: Path = TPM_DEVICE,
        *,
        runner: Runner = run_tool,
        get: HttpGet | None = http_get,
    ) -> None:
        self.device, self.runner, self.get = device, runner, get

    def _tpm(self, command: str, *args: str, stdin: bytes | None = None) -> bytes:
        return self.runner([command, f"--tcti=device:{self.device}", *args], stdin)

    def unavailable(self) -> str | None:
        if not self.device.exists():
            return f"{self.device}: missing"
        try:
            self._tpm("tpm2_nvreadpublic", REPORT_INDEX)
        except CollectError as exc:
            return f"{self.device}: NV index {REPORT_INDEX} not readable ({exc.message})"
        return None

    def collect(self, report_data: bytes) -> Evidence:
        check_report_data(report_data)
        try:
            self._tpm("tpm2_nvreadpublic", USER_DATA_INDEX)
        except CollectError:
            self._tpm("tpm2_nvdefine", "-C", "o", "-s", "64", USER_DATA_INDEX)
        self._tpm("tpm2_nvwrite", "-C", "o", "-i", "-", USER_DATA_INDEX, stdin=report_data)
        hcl = HclReport.parse(self._tpm("tpm2_nvread", "-C", "o", REPORT_INDEX))
        certificates = "" if self.get is None else fetch_vcek_chain(self.get)
        evidence = Evidence(self.kind, hcl.report, certificates, hcl.runtime_data)
        # A stale report (the paravisor did not take our user data) fails here, not at the KMS.
        check_binding(evidence, report_data, AttestationReport.parse(hcl.report))
        return evidence
