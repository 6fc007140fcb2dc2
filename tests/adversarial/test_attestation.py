"""Evidence under attack at the control plane's ``/kms/attest``: forged, downgraded, reused.

Evidence comes from the emulator's own emulated chip (``EmulatedTee``), whose VCEK key is
a file: the attacker here can sign any report that chip could, which is more than a
real adversary can. Each test asserts the exact 403/409 and code, the
``kms.attest_denied`` audit entry, and that no session was opened and nothing released.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from jobruntime.attestation import AttestationReport, sign_report
from jobruntime.attestation.certs import certificates_pem
from jobruntime.attestation.emulated import DEFAULT_GUEST_POLICY, EmulatedTee
from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT, load_tee
from jobruntime.attestation.providers.evidence import Evidence
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.keyrelease.binding import Binding
from jobruntime.keyrelease.jwe import EphemeralKey
from tests.adversarial.helpers import audited, nothing_released, reasons, refused, state
from tests.conftest import Runs
from tests.sessions import TestPod, api, spec_digest

MIGRATE_MA = 1 << 18  # GuestPolicy.migrate_ma: a migration agent may be associated


def chip(emu: EmulatorProcess) -> EmulatedTee:
    return load_tee(emu.state / "tee")


def evidence(tee: EmulatedTee, report: bytes) -> dict[str, Any]:
    chain = certificates_pem([tee.vcek, tee.chain.ask, tee.chain.ark])
    return Evidence("emulated", report, chain).to_json()


def attest_raw(
    emu: EmulatorProcess,
    pod: TestPod,
    purpose: str,
    make: Callable[[bytes], dict[str, Any]],
) -> requests.Response:
    """One attest request whose evidence ``make`` builds over the genuine binding."""
    nonce = api(emu, "verifier", "POST", "/kms/challenge", {"run_id": pod.run_id}).json()["nonce"]
    key = EphemeralKey()
    binding = Binding(
        nonce=nonce,
        run_id=pod.run_id,
        spec_digest=spec_digest(emu, pod.run_id),
        key_thumbprint=key.thumbprint,
        purpose=purpose,
        pod_id=pod.pod_id,
        role=pod.role,
    )
    body = {
        "run_id": pod.run_id,
        "nonce": nonce,
        "purpose": purpose,
        "pod_id": pod.pod_id,
        "role": pod.role,
        "evidence": make(binding.report_data()),
        "public_jwk": key.public_jwk,
    }
    return api(emu, "verifier", "POST", "/kms/attest", body)


def denied(runs: Runs, run_id: str, resp: requests.Response, status: int, code: str) -> None:
    """Refused with ``code``, audited as such, no session opened, nothing released."""
    refused(resp, status, code)
    assert code in reasons(runs.emu, run_id, "kms.attest_denied")
    assert audited(runs.emu, run_id, "run.attested") == []
    nothing_released(runs.emu, run_id)


@pytest.mark.attack(
    id="evidence-forged-signature",
    threat="a report the attacker signed with its own P-384 key, sent with the chip's "
    "genuine VCEK, ASK and ARK",
    adversary="cloud host, anyone outside the TEE",
    mechanism="the report's ECDSA P-384 signature must verify under the VCEK that chains to "
    "the pinned ARK",
)
def test_a_report_signed_by_another_key_opens_no_session(runs: Runs) -> None:
    run_id = runs.approved()
    tee, forger = chip(runs.emu), ec.generate_private_key(ec.SECP384R1())

    def forged(report_data: bytes) -> dict[str, Any]:
        genuine = tee.report(report_data=report_data, measurement=EMULATED_MEASUREMENT)
        return evidence(tee, sign_report(AttestationReport.parse(genuine), forger).serialize())

    resp = attest_raw(runs.emu, TestPod(runs.emu, run_id), "verifier", forged)
    denied(runs, run_id, resp, 403, "attestation.signature")
    assert state(runs.emu, run_id) == "approved"


@pytest.mark.attack(
    id="tcb-downgraded-in-report",
    threat="a report claiming an older REPORTED_TCB than the VCEK it comes with (firmware "
    "rolled back under a current VCEK)",
    adversary="cloud host (controls firmware and what it reports)",
    mechanism="the VCEK's TCB extensions must equal the report's REPORTED_TCB",
)
def test_a_report_with_a_downgraded_tcb_opens_no_session(runs: Runs) -> None:
    run_id = runs.approved()
    tee = chip(runs.emu)
    older = dataclasses.replace(tee.tcb, snp=tee.tcb.snp - 1)

    def downgraded(report_data: bytes) -> dict[str, Any]:
        raw = tee.report(
            report_data=report_data, measurement=EMULATED_MEASUREMENT, reported_tcb=older
        )
        return evidence(tee, raw)

    resp = attest_raw(runs.emu, TestPod(runs.emu, run_id), "verifier", downgraded)
    denied(runs, run_id, resp, 403, "attestation.tcb_mismatch")


@pytest.mark.attack(
    id="migration-agent",
    threat="a guest whose policy allows a migration agent, which could move its memory out",
    adversary="cloud host (sets the guest policy at launch)",
    mechanism="every purpose's release policy includes no-migration-agent",
)
def test_a_guest_that_allows_a_migration_agent_opens_no_session(runs: Runs) -> None:
    run_id = runs.approved()
    pod = TestPod(runs.emu, run_id)
    resp = pod.attest("verifier", policy=DEFAULT_GUEST_POLICY | MIGRATE_MA)
    denied(runs, run_id, resp, 403, "attestation.migration_agent")
    assert pod.tokens == {}


@pytest.mark.attack(
    id="evidence-reused-across-runs",
    threat="a pod's genuine evidence (and its nonce) replayed to open a session for another run",
    adversary="network, whoever controls the namespace (sees pod traffic)",
    mechanism="nonces are per run and single-use; REPORT_DATA binds nonce, run and spec digest",
)
def test_evidence_of_one_run_opens_no_session_for_another(runs: Runs) -> None:
    first, second = runs.approved(), runs.approved()
    captured: dict[str, Any] = {}
    pod = TestPod(runs.emu, first)

    def keep(report_data: bytes) -> dict[str, Any]:
        raw = chip(runs.emu).report(report_data=report_data, measurement=EMULATED_MEASUREMENT)
        captured["evidence"] = evidence(chip(runs.emu), raw)
        return dict(captured["evidence"])

    assert attest_raw(runs.emu, pod, "verifier", keep).status_code == 200
    # Replayed as is, under a fresh nonce of the other run.
    replay = TestPod(runs.emu, second, pod_id=pod.pod_id)
    resp = attest_raw(runs.emu, replay, "verifier", lambda _: dict(captured["evidence"]))
    denied(runs, second, resp, 403, "attestation.report_data")
    assert state(runs.emu, second) == "approved"


@pytest.mark.attack(
    id="evidence-reused-across-purposes",
    threat="evidence the heartbeat sidecar produced used to open a key-agent session (which "
    "gets keys)",
    adversary="a compromised sidecar, or whoever sees pod traffic",
    mechanism="REPORT_DATA binds the purpose; the control plane recomputes it for the "
    "purpose asked",
)
def test_evidence_bound_to_one_purpose_opens_no_session_of_another(runs: Runs) -> None:
    run_id = runs.approved(**runs.datasets())
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    tee = chip(runs.emu)
    spec = spec_digest(runs.emu, run_id)

    def heartbeat_bound(report_data: bytes) -> dict[str, Any]:
        del report_data  # the key agent's binding: not what this evidence says
        nonce = api(runs.emu, "verifier", "POST", "/kms/challenge", {"run_id": run_id})
        bound = Binding(
            nonce.json()["nonce"],
            run_id,
            spec,
            EphemeralKey().thumbprint,
            "heartbeat",
            pod.pod_id,
            pod.role,
        )
        raw = tee.report(report_data=bound.report_data(), measurement=EMULATED_MEASUREMENT)
        return evidence(tee, raw)

    resp = attest_raw(runs.emu, pod, "key-agent", heartbeat_bound)
    refused(resp, 403, "attestation.report_data")
    assert reasons(runs.emu, run_id, "kms.attest_denied") == ["attestation.report_data"]
    purposes = [d["purpose"] for d in audited(runs.emu, run_id, "run.attested")]
    assert purposes == ["verifier"]
    nothing_released(runs.emu, run_id)


@pytest.mark.attack(
    id="host-data-of-another-workload",
    threat="a pod launched as another approved run's driver (its HOST_DATA) asks to be this "
    "run's driver",
    adversary="whoever controls the namespace (pod isolation)",
    mechanism="HOST_DATA must equal the value this run's signed spec names for the role",
)
def test_host_data_approved_for_another_run_opens_no_session(runs: Runs) -> None:
    def pod_run(driver: str) -> str:
        workload = {"isolation": "pod", "host_data": {"driver": driver, "executor": "22" * 32}}
        return runs.approved(**runs.datasets(), workload=workload)

    other, mine = pod_run("a1" * 32), pod_run("b2" * 32)
    intruder = TestPod(runs.emu, mine, host_data=bytes.fromhex("a1" * 32))
    denied(runs, mine, intruder.claim(), 403, "attestation.host_data")
    assert state(runs.emu, mine) == "approved"
    # The same pod is welcome where that HOST_DATA was approved.
    assert TestPod(runs.emu, other, host_data=bytes.fromhex("a1" * 32)).claim().ok
