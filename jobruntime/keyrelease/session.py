"""The pod's side of key release: attest once, then act through that session.

``AttestedSession`` is what the verifier uses to claim the run, what the key agent
uses as its key source, and what the heartbeat sidecar signs heartbeats with. Its
evidence binds the nonce, the run, the signed spec's digest, the pod's id and role,
the purpose and an ephemeral key that never leaves this process.
"""

from __future__ import annotations

import secrets

from jobruntime.attestation.providers.base import EvidenceProvider
from jobruntime.controlplane.api import (
    AttestRequest,
    AttestResponse,
    DatasetRef,
    PublishVersion,
    Purpose,
)
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import Binding, PodIdentity
from jobruntime.keyrelease.jwe import EphemeralKey, KeyWrapError

__all__ = ["AttestedSession", "PodIdentity", "new_pod_id"]


def new_pod_id() -> str:
    """Drawn once per pod by its verifier; every later session of the pod binds it."""
    return secrets.token_hex(16)


class AttestedSession:
    def __init__(
        self,
        client: ControlPlaneClient,
        pod: PodIdentity,
        provider: EvidenceProvider,
        purpose: Purpose,
    ) -> None:
        self._client = client
        self._provider = provider
        self._key = EphemeralKey()
        self._token: str | None = None
        self.pod = pod
        self.purpose: Purpose = purpose
        self.attestations = 0
        self.releases = 0

    @property
    def run_id(self) -> str:
        return self.pod.run_id

    def attest(self) -> AttestResponse:
        """Challenge, then evidence bound to everything the control plane will check."""
        challenge = self._client.challenge(self.run_id)
        binding = Binding(
            nonce=challenge.nonce,
            run_id=self.run_id,
            spec_digest=self.pod.spec_digest,
            key_thumbprint=self._key.thumbprint,
            purpose=self.purpose,
            pod_id=self.pod.pod_id,
            role=self.pod.role,
        )
        evidence = self._provider.collect(binding.report_data())
        answer = self._client.attest(
            AttestRequest(
                run_id=self.run_id,
                nonce=challenge.nonce,
                purpose=self.purpose,
                pod_id=self.pod.pod_id,
                role=self.pod.role,
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
        """Publish a version, signed by the ephemeral key: the token alone publishes nothing."""
        request = PublishVersion(
            session=self._session(), dataset=dataset, version=version, manifest_digest=digest
        )
        signature = self.sign(request.statement(self.run_id))
        self._client.publish_version(request.model_copy(update={"signature": signature}))

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

    def spark_secret(self) -> bytes:
        """The run's Spark secret, unwrapped in memory; attests first if it has not yet."""
        answer = self._client.spark_secret(self._session())
        if answer.run_id != self.pod.run_id:
            raise KeyWrapError(f"the KMS answered with the secret of {answer.run_id}")
        return self._key.unwrap(answer.jwe)

    def release(self, dataset: str) -> bytes:
        """One dataset key, unwrapped in memory; attests first if it has not yet."""
        answer = self._client.release(self._session(), dataset)
        if answer.dataset != dataset:
            raise KeyWrapError(f"asked for {dataset}, the KMS answered for {answer.dataset}")
        self.releases += 1
        return self._key.unwrap(answer.jwe)
