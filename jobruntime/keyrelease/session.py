"""The pod's side of key release: attest once, then act through that session.

``AttestedSession`` is what the verifier uses to claim the run, what the key agent
uses as its key source, and what the heartbeat sidecar signs heartbeats with. Its
evidence binds the nonce, the run, the signed spec's digest, the pod's id and role,
the purpose and an ephemeral key that never leaves this process. It speaks plain
JSON (``controlplane.pod``), so the sidecars that hold one never import pydantic.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Protocol

from jobruntime.controlplane.pod import Attested, PodClient, Purpose, publish_statement
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import Binding, PodIdentity
from jobruntime.keyrelease.jwe import EphemeralKey, KeyWrapError

if TYPE_CHECKING:
    from jobruntime.attestation.providers.base import EvidenceProvider

__all__ = ["AttestedSession", "PodIdentity", "new_pod_id"]


class HasPodClient(Protocol):
    """A ``ControlPlaneClient``: its :attr:`pod` calls share its connection and token."""

    @property
    def pod(self) -> PodClient: ...


def new_pod_id() -> str:
    """Drawn once per pod by its verifier; every later session of the pod binds it."""
    return secrets.token_hex(16)


class AttestedSession:
    def __init__(
        self,
        client: PodClient | HasPodClient,
        pod: PodIdentity,
        provider: EvidenceProvider,
        purpose: Purpose,
    ) -> None:
        self._client = client if isinstance(client, PodClient) else client.pod
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

    def attest(self) -> Attested:
        """Challenge, then evidence bound to everything the control plane will check."""
        nonce = self._client.challenge(self.run_id)
        binding = Binding(
            nonce=nonce,
            run_id=self.run_id,
            spec_digest=self.pod.spec_digest,
            key_thumbprint=self._key.thumbprint,
            purpose=self.purpose,
            pod_id=self.pod.pod_id,
            role=self.pod.role,
        )
        evidence = self._provider.collect(binding.report_data())
        answer = self._client.attest(
            {  # api.AttestRequest
                "run_id": self.run_id,
                "nonce": nonce,
                "purpose": self.purpose,
                "pod_id": self.pod.pod_id,
                "role": self.pod.role,
                "evidence": evidence.to_json(),
                "public_jwk": self._key.public_jwk,
            }
        )
        self._token = answer.session
        self.attestations += 1
        return answer

    def latest_version(self, dataset: str) -> tuple[int, str] | None:
        found = self._client.latest_version(self._session(), dataset)
        return (found.version, found.manifest_digest) if found else None

    def record_version(self, dataset: str, version: int, digest: str) -> None:
        """Publish a version, signed by the ephemeral key: the token alone publishes nothing."""
        signature = self.sign(publish_statement(self.run_id, dataset, version, digest))
        self._client.publish_version(self._session(), dataset, version, digest, signature)

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
