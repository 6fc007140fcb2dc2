"""Appraise evidence from a pod: is it genuine, bound to this request, and acceptable?

The control plane runs this before it records an attestation or opens a key-release
session. Key-specific rules (measurements, minimum TCB, evidence kinds) are applied
later, per key, by ``release_policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jobruntime.attestation.certs import ProductChain, load_certificates
from jobruntime.attestation.errors import CertificateError, ProductMismatchError
from jobruntime.attestation.policy import NoDebug, Policy
from jobruntime.attestation.providers.evidence import Evidence, check_binding
from jobruntime.attestation.report import AttestationReport
from jobruntime.attestation.verify import AttestationVerifier, VerifiedReport


def appraise(
    evidence: Evidence,
    binding: bytes,
    chains: Sequence[ProductChain],
    *,
    allow_emulated: bool,
    policy: Policy | None = None,
    at: datetime | None = None,
) -> VerifiedReport:
    # 1. The report parses (size, version, reserved bytes): structure only, nothing trusted.
    report = AttestationReport.parse(evidence.report)
    # 2. The endorsement key is the first certificate the platform supplied.
    certificates = load_certificates(evidence.certificates) if evidence.certificates else []
    if not certificates:
        raise CertificateError("evidence carries no VCEK or VLEK certificate")
    # 3. Signature, chain to a pinned root, TCB binding, then the policy (no debug at least).
    #    v3+ reports name their product (CPUID); for v2 the issuing chain does.
    endorsement = certificates[0]
    issuers = [c.product for c in chains if endorsement.is_issued_by(c.ask)]
    product = report.product or (issuers[0] if issuers else None)
    if product is None:
        raise ProductMismatchError(f"{endorsement.subject_cn} chains to no pinned root")
    verifier = AttestationVerifier(
        chains, product, policy or NoDebug(), allow_emulated=allow_emulated
    )
    verified = verifier.verify(report, endorsement, at=at)
    # 4. Only a verified report's REPORT_DATA is read: it binds the nonce, the run, the
    #    spec, the pod, its role, the purpose and the ephemeral key.
    check_binding(evidence, binding, verified.report)
    return verified
