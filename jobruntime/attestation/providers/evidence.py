"""The evidence a pod sends to a verifier, and how it binds the verifier's 64 bytes.

One shape for every source so the KMS and the control plane handle evidence the
same way whatever collected it: the raw ATTESTATION_REPORT, the certificates the
platform supplied (VCEK or VLEK first, then ASK/ARK; empty when the verifier must
obtain them elsewhere) and, for the Azure vTPM only, the runtime data whose hash
the report carries. Nothing here says the evidence is genuine: ``AttestationVerifier``
does that, and ``check_binding`` then ties the verified report to the binding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal, get_args

from jobruntime.attestation.certs import load_certificates
from jobruntime.attestation.errors import ReportDataError
from jobruntime.attestation.providers.errors import EvidenceError
from jobruntime.attestation.report import REPORT_SIZE, AttestationReport
from jobruntime.errors import AttestationError

EvidenceKind = Literal["sev-snp", "azure-vtpm", "emulated"]
KINDS: tuple[str, ...] = get_args(EvidenceKind)
REPORT_DATA_SIZE = 64
MAX_CERTIFICATES = 64 * 1024
MAX_RUNTIME_DATA = 64 * 1024
_FIELDS = frozenset({"kind", "report", "certificates", "runtime_data"})


def check_report_data(report_data: bytes) -> None:
    """Every source takes exactly the 64 bytes REPORT_DATA holds; shorter is not padded."""
    if not isinstance(report_data, bytes) or len(report_data) != REPORT_DATA_SIZE:
        raise ValueError(f"report_data must be {REPORT_DATA_SIZE} bytes")


@dataclass(frozen=True)
class Evidence:
    """Evidence as collected; checked for form on construction, never for truth."""

    kind: EvidenceKind
    report: bytes
    certificates: str
    runtime_data: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EvidenceError(f"unknown evidence kind {self.kind!r}")
        if len(self.report) != REPORT_SIZE:
            raise EvidenceError(f"report is {len(self.report)} bytes, not {REPORT_SIZE}")
        if len(self.certificates.encode()) > MAX_CERTIFICATES:
            raise EvidenceError(f"certificates exceed {MAX_CERTIFICATES} bytes")
        if self.certificates:
            try:
                load_certificates(self.certificates)
            except AttestationError as exc:
                raise EvidenceError(f"certificates: {exc.message}") from None
        if (self.runtime_data is not None) != (self.kind == "azure-vtpm"):
            raise EvidenceError("runtime_data is required for azure-vtpm and only for it")
        if self.runtime_data is not None and len(self.runtime_data) > MAX_RUNTIME_DATA:
            raise EvidenceError(f"runtime_data exceeds {MAX_RUNTIME_DATA} bytes")

    def to_json(self) -> dict[str, str | None]:
        runtime = self.runtime_data
        return {
            "kind": self.kind,
            "report": base64.b64encode(self.report).decode(),
            "certificates": self.certificates,
            "runtime_data": None if runtime is None else base64.b64encode(runtime).decode(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Evidence:
        """The inverse of ``to_json``; anything else raises ``EvidenceError``."""
        if not isinstance(obj, dict) or set(obj) != _FIELDS:
            raise EvidenceError(f"evidence must be an object with exactly {sorted(_FIELDS)}")
        if not isinstance(obj["certificates"], str):
            raise EvidenceError("certificates must be a PEM string")
        runtime = obj["runtime_data"]
        if runtime is not None:
            runtime = _b64(runtime, "runtime_data", MAX_RUNTIME_DATA)
        report = _b64(obj["report"], "report", REPORT_SIZE)
        return cls(obj["kind"], report, obj["certificates"], runtime)


def _b64(value: object, name: str, limit: int) -> bytes:
    # Bound the text before decoding so an oversized field costs nothing.
    if not isinstance(value, str) or len(value) > 4 * -(-limit // 3):
        raise EvidenceError(f"{name} must be base64 of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        raise EvidenceError(f"{name} is not valid base64") from None


def expected_report_data(evidence: Evidence, binding: bytes) -> bytes:
    """What REPORT_DATA must start with for ``evidence`` to bind ``binding`` (64 bytes).

    sev-snp and emulated: the guest asked the firmware for REPORT_DATA = binding,
    so all 64 bytes must equal it. azure-vtpm: the guest cannot choose REPORT_DATA;
    the paravisor sets REPORT_DATA[0:32] = SHA-256(runtime data) and puts the
    guest's 64 bytes, hex (either case), in the runtime data's ``user-data``. So the
    runtime data must carry the binding (checked here) and the 32-byte digest is
    returned. Raises ``ReportDataError`` (``attestation.report_data``).
    """
    check_report_data(binding)
    if evidence.runtime_data is None:
        return binding
    user_data = _runtime_claims(evidence.runtime_data).get("user-data")
    if not isinstance(user_data, str) or len(user_data) != 2 * REPORT_DATA_SIZE:
        raise ReportDataError("runtime data has no 64-byte hex user-data")
    try:
        carried = bytes.fromhex(user_data)
    except ValueError:
        raise ReportDataError("runtime data user-data is not hex") from None
    if not hmac.compare_digest(carried, binding):
        raise ReportDataError("runtime data user-data does not match the expected binding")
    return hashlib.sha256(evidence.runtime_data).digest()


def check_binding(evidence: Evidence, binding: bytes, report: AttestationReport) -> None:
    """``report`` (verified, and parsed from ``evidence``) binds ``binding``, or raise."""
    if report.serialize() != evidence.report:
        raise ReportDataError("the report checked is not the evidence's report")
    expected = expected_report_data(evidence, binding)
    if not hmac.compare_digest(report.report_data[: len(expected)], expected):
        raise ReportDataError("report_data does not match the expected binding")


def _runtime_claims(runtime_data: bytes) -> dict[str, object]:
    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ReportDataError("runtime data repeats a JSON key")
        return dict(pairs)

    try:
        claims = json.loads(runtime_data, object_pairs_hook=unique)
    except (ValueError, RecursionError):  # also: too deep, an integer over 4300 digits
        raise ReportDataError("runtime data is not JSON") from None
    if not isinstance(claims, dict):
        raise ReportDataError("runtime data is not a JSON object")
    return claims
