"""The pod's side of key release: attest once, then fetch each dataset key once.

``AttestedSession`` is what the key agent uses as its key source, and what the
verifier's step 9 uses to record the run as attested.
"""

from __future__ import annotations

from typing import Literal

from jobruntime.attestation.providers.base import EvidenceProvider
from jobruntime.controlplane.api import AttestRequest, AttestResponse, DatasetRef, PublishVersion
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import report_data
from jobruntime.keyrelease.jwe import EphemeralKey, KeyWrapError

Purpose = Literal["verifier", "key-agent", "heartbeat"]


class AttestedSession:
    def __init__(
        self,
        client: ControlPlaneClient,
        run_id: str,
        provider: EvidenceProvider,
        purpose: Purpose = "key-agent",
        allowed: frozenset[str] = frozenset(),
    ) -> None:
        self._client = client
        self._provider = provider
        self._key = EphemeralKey()
        self._token: str | None = None
        self.run_id = run_id
        self.purpose: Purpose = purpose
        self.allowed = allowed
        self.attestations = 0
        self.releases = 0

    def attest(self) -> AttestResponse:
        """Challenge, evidence bound to (nonce, run, ephemeral key, purpose), session."""
        challenge = self._client.challenge(self.run_id)
        binding = report_data(challenge.nonce, self.run_id, self._key.thumbprint, self.purpose)
        evidence = self._provider.collect(binding)
        answer = self._client.attest(
            AttestRequest(
                run_id=self.run_id,
                nonce=challenge.nonce,
                purpose=self.purpose,
                evidence=evidence.to_json(),
                public_jwk=self._key.public_jwk,
            )
        )
        self._token = answer.session
        self.attestations += 1
        return answer

    def latest_version(self, dataset: str) -> tuple[int, str] | None:
        found = self._client.latest_version(DatasetRef(session=self._session(), dataset=dataset))
        return (found.version, found.manifest_digest) if found else None

    def record_version(self, dataset: str, version: int, digest: str) -> None:
        self._client.publish_version(
            PublishVersion(
                session=self._session(), dataset=dataset, version=version, manifest_digest=digest
            )
        )

    def sign(self, payload: bytes) -> str:
        """A compact JWS by the ephemeral key this session's evidence bound."""
        return jwe.sign(self._key, payload)

    @property
    def token(self) -> str:
        return self._session()

    def _session(self) -> str:
        if self._token is None:
            self.attest()
        assert self._token is not None
        return self._token

    def release(self, dataset: str) -> bytes:
        """One dataset key, unwrapped in memory; attests first if it has not yet."""
        answer = self._client.release(self._session(), dataset)
        if answer.dataset != dataset:
            raise KeyWrapError(f"asked for {dataset}, the KMS answered for {answer.dataset}")
        self.releases += 1
        return self._key.unwrap(answer.jwe)
