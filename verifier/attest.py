"""Step 9: evidence bound to the run goes to the control plane, which records it.

The verifier attests with purpose ``verifier``; the key agent attests on its own
(purpose ``key-agent``) because only it may hold the ephemeral key its keys are
wrapped to.
"""

from __future__ import annotations

from typing import Any

from jobruntime.attestation.providers.base import EvidenceProvider
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.keyrelease.session import AttestedSession
from jobruntime.spec.checks import Subject


class EvidenceAttestation:
    """The ``AttestationStep`` the verifier runs by default."""

    def __init__(self, provider: EvidenceProvider) -> None:
        self.provider = provider

    def attest(self, subject: Subject, client: ControlPlaneClient) -> dict[str, Any]:
        session = AttestedSession(client, subject.spec.run_id, self.provider, purpose="verifier")
        answer = session.attest()
        return {
            "evidence_kind": answer.evidence_kind,
            "measurement": answer.measurement,
            "recorded_until": answer.expires_at.isoformat(),
        }
