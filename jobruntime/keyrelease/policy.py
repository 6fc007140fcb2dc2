"""Release policies: one declarative ``ReleasePolicy`` built into small composable checks.

The same type decides, per purpose, whether a pod's session may open (attest time)
and, per key, whether a key may be released to a session. ``build`` turns the
declaration into policy objects in the shape of go-sev-guest's ``validate.Options``;
every check sees only a report whose signature, chain and TCB binding were verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from jobruntime.attestation.errors import EmptyPolicyError, EmulatedRootError, IsolationError
from jobruntime.attestation.policy import (
    AllowedChipIds,
    AllowedMeasurements,
    AllowedVmpl,
    MinimumGuestSvn,
    MinimumTcb,
    NoDebug,
    NoMigrationAgent,
    NoSmt,
    Policy,
    SingleSocket,
)
from jobruntime.attestation.product import Product
from jobruntime.attestation.report import AttestationReport
from jobruntime.attestation.tcb import TcbParts
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy
from jobruntime.errors import AttestationError


class EvidenceKindError(AttestationError):
    """The policy does not accept this kind of evidence."""

    code = "attestation.evidence_kind"


@dataclass(frozen=True)
class Appraisal:
    """What a policy decides on: verified evidence, and the run's isolation mode."""

    kind: EvidenceKind
    isolation: Literal["pod", "node"]
    report: AttestationReport
    product: Product


class AppraisalPolicy(Protocol):
    def verify(self, appraisal: Appraisal) -> None: ...


@dataclass(frozen=True)
class EvidenceKinds:
    kinds: frozenset[EvidenceKind]

    def verify(self, appraisal: Appraisal) -> None:
        if appraisal.kind in self.kinds:
            return
        if appraisal.kind is EvidenceKind.EMULATED:
            raise EmulatedRootError("emulated evidence under a production release policy")
        raise EvidenceKindError(f"{appraisal.kind.value} evidence is not allowed")


@dataclass(frozen=True)
class IsolationModes:
    """``node`` isolation trusts the cluster's admins: a policy must name it to accept it."""

    modes: frozenset[str]

    def verify(self, appraisal: Appraisal) -> None:
        if appraisal.isolation not in self.modes:
            raise IsolationError(
                f"{appraisal.isolation} isolation is not allowed (allowed: {sorted(self.modes)})"
            )


@dataclass(frozen=True)
class OnReport:
    """A report policy of ``jobruntime.attestation.policy`` applied to the appraisal."""

    policy: Policy

    def verify(self, appraisal: Appraisal) -> None:
        self.policy.verify(appraisal.report)


@dataclass(frozen=True)
class AllOf:
    """Every check must hold; the first refusal is raised; an empty one refuses."""

    checks: tuple[AppraisalPolicy, ...]

    def verify(self, appraisal: Appraisal) -> None:
        if not self.checks:
            raise EmptyPolicyError("a release policy with no rules accepts nothing")
        for check in self.checks:
            check.verify(appraisal)


def build(policy: ReleasePolicy, product: Product) -> AllOf:
    """The checks ``policy`` declares, in a fixed order: cheapest and most telling first."""
    floor = {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0} | dict(policy.minimum_tcb)
    if product.has_fmc:
        floor.setdefault("fmc", 0)
    report: list[Policy] = [
        NoDebug(),
        AllowedVmpl(policy.vmpls),
        AllowedMeasurements(bytes.fromhex(m) for m in policy.measurements),
        MinimumTcb(TcbParts(**floor), product),
        MinimumGuestSvn(policy.minimum_guest_svn),
    ]
    if not policy.allow_migration_agent:
        report.append(NoMigrationAgent())
    if not policy.allow_smt:
        report.append(NoSmt())
    if policy.require_single_socket:
        report.append(SingleSocket())
    if policy.chip_ids:
        report.append(AllowedChipIds(bytes.fromhex(c) for c in policy.chip_ids))
    return AllOf(
        (
            EvidenceKinds(frozenset(policy.evidence_kinds)),
            IsolationModes(frozenset(policy.isolation)),
            *(OnReport(p) for p in report),
        )
    )


def check_release(policy: ReleasePolicy, appraisal: Appraisal) -> None:
    build(policy, appraisal.product).verify(appraisal)
