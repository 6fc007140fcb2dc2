"""What a genuine report must also satisfy to be accepted (verification step 4).

Small composable policies in the style of ``sigstore/verify/policy.py``: each
checks one property and raises its own typed error; ``AllOf`` combines them.
A policy only ever sees a report whose signature and chain were already verified.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from jobruntime.attestation.errors import (
    ChipNotAllowedError,
    DebugEnabledError,
    EmptyPolicyError,
    GuestSvnError,
    HostDataError,
    MeasurementError,
    MigrationAgentError,
    ReportDataError,
    SingleSocketError,
    SmtError,
    TcbTooLowError,
    VmplError,
)
from jobruntime.attestation.product import Product
from jobruntime.attestation.report import AttestationReport
from jobruntime.attestation.tcb import TcbParts


class Policy(Protocol):
    def verify(self, report: AttestationReport) -> None:
        """Return if the report is acceptable, raise a ``PolicyError`` otherwise."""


@dataclass(frozen=True)
class AllOf:
    """Every policy must hold; the first refusal is raised. An empty ``AllOf`` refuses."""

    policies: tuple[Policy, ...]

    def __init__(self, *policies: Policy) -> None:
        object.__setattr__(self, "policies", policies)

    def verify(self, report: AttestationReport) -> None:
        if not self.policies:
            raise EmptyPolicyError("a policy with no rules accepts nothing")
        for policy in self.policies:
            policy.verify(report)


class NoDebug:
    """The guest policy must not allow the host to debug (read and write) the guest."""

    def verify(self, report: AttestationReport) -> None:
        if report.policy.debug:
            raise DebugEnabledError(f"guest policy {report.policy.raw:#x} allows debugging")


@dataclass(frozen=True)
class AllowedMeasurements:
    """The launch measurement must be one of these (48-byte SHA-384 digests)."""

    measurements: frozenset[bytes]

    def __init__(self, measurements: Iterable[bytes]) -> None:
        allowed = frozenset(measurements)
        if not allowed or any(len(m) != 48 for m in allowed):
            raise ValueError("allowed measurements are one or more 48-byte digests")
        object.__setattr__(self, "measurements", allowed)

    def verify(self, report: AttestationReport) -> None:
        if report.measurement not in self.measurements:
            raise MeasurementError(f"measurement {report.measurement.hex()} is not allowed")


@dataclass(frozen=True)
class MinimumTcb:
    """Every component of REPORTED_TCB, the TCB the signing key is derived from, is high enough."""

    minimum: TcbParts
    product: Product

    def verify(self, report: AttestationReport) -> None:
        reported = report.reported_tcb.parts(self.product)
        low = reported.below(self.minimum)
        if low:
            raise TcbTooLowError(f"reported TCB below minimum: {', '.join(low)}")


@dataclass(frozen=True)
class MinimumGuestSvn:
    minimum: int

    def verify(self, report: AttestationReport) -> None:
        if report.guest_svn < self.minimum:
            raise GuestSvnError(f"guest SVN {report.guest_svn} is below {self.minimum}")


@dataclass(frozen=True)
class AllowedVmpl:
    """The report must come from one of these privilege levels (0 is the most privileged)."""

    vmpls: frozenset[int]

    def __init__(self, vmpls: Iterable[int]) -> None:
        object.__setattr__(self, "vmpls", frozenset(vmpls))

    def verify(self, report: AttestationReport) -> None:
        if report.vmpl not in self.vmpls:
            raise VmplError(f"VMPL {report.vmpl} is not in {sorted(self.vmpls)}")


class NoMigrationAgent:
    """The guest policy must not allow a migration agent (it could export the guest's memory)."""

    def verify(self, report: AttestationReport) -> None:
        if report.policy.migrate_ma:
            raise MigrationAgentError(
                f"guest policy {report.policy.raw:#x} allows a migration agent"
            )


class NoSmt:
    """The guest policy must forbid SMT (sibling hyperthreads share caches)."""

    def verify(self, report: AttestationReport) -> None:
        if report.policy.smt:
            raise SmtError(f"guest policy {report.policy.raw:#x} allows SMT")


class SingleSocket:
    """The guest policy must restrict the guest to a single socket."""

    def verify(self, report: AttestationReport) -> None:
        if not report.policy.single_socket:
            raise SingleSocketError(f"guest policy {report.policy.raw:#x} allows several sockets")


@dataclass(frozen=True)
class AllowedChipIds:
    """The report must come from one of these chips (64-byte CHIP_ID)."""

    chip_ids: frozenset[bytes]

    def __init__(self, chip_ids: Iterable[bytes]) -> None:
        allowed = frozenset(chip_ids)
        if not allowed or any(len(c) != 64 for c in allowed):
            raise ValueError("allowed chip ids are one or more 64-byte values")
        object.__setattr__(self, "chip_ids", allowed)

    def verify(self, report: AttestationReport) -> None:
        if report.chip_id not in self.chip_ids:
            raise ChipNotAllowedError(f"chip {report.chip_id[:8].hex()}… is not allowed")


@dataclass(frozen=True)
class HostDataEquals:
    """HOST_DATA, set by whoever launched the guest, must be this 32-byte value."""

    host_data: bytes

    def __post_init__(self) -> None:
        if len(self.host_data) != 32:
            raise ValueError("host_data is 32 bytes")

    def verify(self, report: AttestationReport) -> None:
        if not hmac.compare_digest(report.host_data, self.host_data):
            raise HostDataError(f"host_data {report.host_data.hex()} is not the expected value")


@dataclass(frozen=True)
class ReportDataEquals:
    """REPORT_DATA must be the 64-byte binding (nonce, run id, key) the verifier expects."""

    report_data: bytes

    def __post_init__(self) -> None:
        if len(self.report_data) != 64:
            raise ValueError("report_data is 64 bytes")

    def verify(self, report: AttestationReport) -> None:
        if not hmac.compare_digest(report.report_data, self.report_data):
            raise ReportDataError("report_data does not match the expected binding")


def standard_policy(
    product: Product,
    *,
    measurements: Iterable[bytes],
    minimum_tcb: TcbParts,
    report_data: bytes,
    minimum_guest_svn: int = 0,
    vmpls: Iterable[int] = (0,),
    host_data: bytes | None = None,
) -> AllOf:
    """Every check the design asks for at key release; only host_data is optional."""
    policies: list[Policy] = [
        NoDebug(),
        AllowedMeasurements(measurements),
        MinimumTcb(minimum_tcb, product),
        MinimumGuestSvn(minimum_guest_svn),
        AllowedVmpl(vmpls),
        ReportDataEquals(report_data),
    ]
    if host_data is not None:
        policies.append(HostDataEquals(host_data))
    return AllOf(*policies)
