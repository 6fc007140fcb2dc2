"""Attested sessions for tests, over raw HTTP: a pod's evidence, made in this process.

``TestPod`` plays one pod: its verifier draws a pod id, and each purpose attests
with evidence from the emulated TEE whose launch parameters (HOST_DATA, VMPL, guest
policy) the test chooses, as a launcher or a forger would. Refusals come back as
the HTTP responses, so tests assert the exact code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from jobruntime.attestation.providers.emulated import (
    EMULATED_MEASUREMENT,
    EmulatedProvider,
    load_tee,
)
from jobruntime.controlplane.api import PublishVersion, Purpose
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import Binding, PodIdentity
from jobruntime.keyrelease.jwe import EphemeralKey
from jobruntime.keyrelease.session import AttestedSession, new_pod_id


def api(
    emu: EmulatorProcess, principal: str, method: str, path: str, body: Any = None
) -> requests.Response:
    return requests.request(
        method,
        f"{emu.url}/v1{path}",
        headers={"Authorization": f"Bearer {emu.token(principal)}"},
        json=body,
        timeout=10,
    )


def error_code(resp: requests.Response) -> str:
    return str(resp.json()["error"]["code"])


def spec_digest(emu: EmulatorProcess, run_id: str) -> str:
    with emu.client("operator") as c:
        return c.status(run_id).spec_digest


@dataclass
class TestPod:
    emu: EmulatorProcess
    run_id: str
    role: str = "driver"
    host_data: bytes = bytes(32)
    pod_id: str = field(default_factory=lambda: secrets.token_hex(16))
    tokens: dict[str, str] = field(default_factory=dict)
    keys: dict[str, EphemeralKey] = field(default_factory=dict)

    __test__ = False  # not a test class

    def attest(self, purpose: str, **launch: Any) -> requests.Response:
        """One attestation; ``launch`` overrides the emulated guest's launch parameters."""
        nonce = api(self.emu, "verifier", "POST", "/kms/challenge", {"run_id": self.run_id})
        assert nonce.status_code == 200, nonce.text
        key = EphemeralKey()
        binding = Binding(
            nonce=nonce.json()["nonce"],
            run_id=self.run_id,
            spec_digest=launch.pop("spec_digest", None) or spec_digest(self.emu, self.run_id),
            key_thumbprint=key.thumbprint,
            purpose=purpose,
            pod_id=self.pod_id,
            role=self.role,
        )
        report_data = launch.pop("report_data", None) or binding.report_data()
        provider = EmulatedProvider(
            load_tee(self.emu.state / "tee"),
            measurement=launch.pop("measurement", EMULATED_MEASUREMENT),
            host_data=launch.pop("host_data", self.host_data),
            **launch,
        )
        evidence = provider.collect(report_data)
        resp = api(
            self.emu,
            "verifier",
            "POST",
            "/kms/attest",
            {
                "run_id": self.run_id,
                "nonce": binding.nonce,
                "purpose": purpose,
                "pod_id": self.pod_id,
                "role": self.role,
                "evidence": evidence.to_json(),
                "public_jwk": key.public_jwk,
            },
        )
        if resp.status_code == 200:
            self.tokens[purpose] = resp.json()["session"]
            self.keys[purpose] = key
        return resp

    def session(self, purpose: str) -> str:
        if purpose not in self.tokens:
            resp = self.attest(purpose)
            assert resp.status_code == 200, resp.text
        return self.tokens[purpose]

    def claim(self, claim_id: str | None = None) -> requests.Response:
        """Attest as the driver's verifier (once), then claim with that session."""
        if "verifier" not in self.tokens:
            resp = self.attest("verifier")
            if resp.status_code != 200:
                return resp
        body = {"claim_id": claim_id or secrets.token_hex(32), "session": self.tokens["verifier"]}
        return api(self.emu, "verifier", "POST", f"/runs/{self.run_id}/claim", body)

    def publish(
        self, dataset: str, version: int, digest: str, *, sign: bool = True
    ) -> requests.Response:
        """Record a dataset version as this pod's key agent does (signed by its bound key)."""
        request = PublishVersion(
            session=self.session("key-agent"),
            dataset=dataset,
            version=version,
            manifest_digest=digest,
        )
        if sign:
            key = self.keys["key-agent"]
            request.signature = jwe.sign(key, request.statement(self.run_id))
        body = request.model_dump(exclude_none=True)
        return api(self.emu, "verifier", "POST", "/datasets/publish", body)

    def release(self, dataset: str, purpose: str = "key-agent") -> requests.Response:
        body = {"session": self.session(purpose), "dataset": dataset}
        return api(self.emu, "verifier", "POST", "/kms/release", body)


def client_session(
    emu: EmulatorProcess,
    client: ControlPlaneClient,
    run_id: str,
    purpose: Purpose = "verifier",
    role: Literal["driver", "executor"] = "driver",
    host_data: bytes = bytes(32),
) -> AttestedSession:
    """The product's own session class over ``client``, on the emulated TEE (not attested yet)."""
    provider = EmulatedProvider(
        load_tee(emu.state / "tee"), measurement=EMULATED_MEASUREMENT, host_data=host_data
    )
    pod = PodIdentity(run_id, spec_digest(emu, run_id), new_pod_id(), role)
    return AttestedSession(client, pod, provider, purpose)
