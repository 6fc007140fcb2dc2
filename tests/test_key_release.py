"""Attested key release end to end against the real emulator: challenge, attest, release.

Every refusal is checked twice: the exact remote code the client sees, and the
``kms.attest_denied`` / ``kms.release_denied`` audit entry whose reason is that code.
No code of ours is mocked; evidence is altered only by small provider wrappers.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from jobruntime.attestation.emulated import DEFAULT_GUEST_POLICY, EmulatedTee
from jobruntime.attestation.providers.emulated import EmulatedProvider, load_tee
from jobruntime.attestation.providers.evidence import Evidence, EvidenceKind
from jobruntime.controlplane import api
from jobruntime.controlplane.api import AttestRequest, AttestResponse, AuditEntry, ReleasePolicy
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.emulator.state import EMULATED_MEASUREMENT, TEE_DIR
from jobruntime.errors import AuthError, ControlPlaneError, JobRuntimeError
from jobruntime.keyrelease.binding import Binding, PodIdentity
from jobruntime.keyrelease.jwe import EphemeralKey, KeyWrapError
from jobruntime.keyrelease.session import AttestedSession, new_pod_id
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import utcnow
from jobruntime.verification.bundle import load_bundle
from tests.conftest import Runs
from tests.sessions import spec_digest
from verifier.run import verify_run

DEV_POLICY = ReleasePolicy(
    isolation=["pod", "node"],
    evidence_kinds=[
        api.EvidenceKind.SEV_SNP,
        api.EvidenceKind.AZURE_VTPM,
        api.EvidenceKind.EMULATED,
    ],
    measurements=[EMULATED_MEASUREMENT.hex()],
)
DEBUG_BIT = 1 << 19  # GuestPolicy.debug
REPORT_ID_OFFSET = 0x140  # inside the signed part, and not REPORT_DATA


# --- helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyedRun:
    run_id: str
    key_ids: dict[str, str]  # dataset name -> key id
    pod: PodIdentity  # the claiming driver pod (a fresh, unclaimed pod if not verified)


def keyed_run(
    emu: EmulatorProcess,
    runs: Runs,
    policy: ReleasePolicy = DEV_POLICY,
    *,
    verify: bool = True,
) -> KeyedRun:
    """A run whose three datasets have fresh master keys; claimed unless ``verify=False``."""
    tag = secrets.token_hex(6)
    key_ids = {
        "customers_a": f"org-a/customers-{tag}",
        "customers_b": f"org-b/customers-{tag}",
        "overlap": f"org-a/overlap-{tag}",
    }
    for key_id in key_ids.values():
        with emu.client(f"owner:{key_id.split('/')[0]}") as c:
            c.create_key(key_id, policy)
    inputs = [
        {
            "name": "customers_a",
            "uri": "file:///data/a",
            "key_id": key_ids["customers_a"],
            "owner": "org-a",
        },
        {
            "name": "customers_b",
            "uri": "file:///data/b",
            "key_id": key_ids["customers_b"],
            "owner": "org-b",
        },
    ]
    outputs = [
        {"name": "overlap", "uri": "file:///data/o", "key_id": key_ids["overlap"], "owner": "org-a"}
    ]
    run_id = runs.approved(inputs=inputs, outputs=outputs)
    if not verify:
        pod = PodIdentity(run_id, spec_digest(emu, run_id), new_pod_id(), "driver")
        return KeyedRun(run_id, key_ids, pod)
    return KeyedRun(run_id, key_ids, verified_pod(runs, run_id))


def verified_pod(runs: Runs, run_id: str, mode: str = "driver") -> PodIdentity:
    """Run the verifier (claiming, for a driver) and return the pod identity it drew."""
    directory = runs.tmp / f"bundle-{run_id}-{secrets.token_hex(3)}"
    verify_run(runs.config(run_id, output_dir=directory, mode=mode))
    return load_bundle(directory, TrustRoot.load(runs.emu.trust_root), now=utcnow()).identity


def emulated(emu: EmulatorProcess, **kw: Any) -> EmulatedProvider:
    """The emulator's own chip, reporting the dev measurement unless told otherwise."""
    kw.setdefault("measurement", EMULATED_MEASUREMENT)
    return EmulatedProvider(load_tee(emu.state / TEE_DIR), **kw)


def session(emu: EmulatorProcess, pod: PodIdentity, provider: Any = None) -> AttestedSession:
    """The key agent's session for ``pod`` (one per pod: a second one is refused)."""
    return AttestedSession(emu.client("verifier"), pod, provider or emulated(emu), "key-agent")


@dataclass(frozen=True)
class Tampered:
    """A provider whose evidence passes through ``change`` (report_data as asked)."""

    inner: EmulatedProvider
    change: Callable[[Evidence], Evidence]

    @property
    def kind(self) -> EvidenceKind:
        return self.inner.kind

    def collect(self, report_data: bytes) -> Evidence:
        return self.change(self.inner.collect(report_data))


@dataclass(frozen=True)
class IgnoresReportData:
    """A provider that reports over 64 zero bytes whatever it was asked to bind."""

    inner: EmulatedProvider

    @property
    def kind(self) -> EvidenceKind:
        return self.inner.kind

    def collect(self, report_data: bytes) -> Evidence:
        return self.inner.collect(bytes(64))


def flip_report_byte(evidence: Evidence) -> Evidence:
    report = bytearray(evidence.report)
    report[REPORT_ID_OFFSET] ^= 0x01
    return dataclasses.replace(evidence, report=bytes(report))


def binding(pod: PodIdentity, nonce: str, key: EphemeralKey) -> bytes:
    return Binding(
        nonce, pod.run_id, pod.spec_digest, key.thumbprint, "key-agent", pod.pod_id, pod.role
    ).report_data()


def attest_by_hand(
    client: ControlPlaneClient,
    pod: PodIdentity,
    provider: EmulatedProvider,
    key: EphemeralKey,
    nonce: str | None = None,
) -> tuple[str, AttestResponse]:
    """Challenge (unless given a nonce) and attest, as ``AttestedSession`` does."""
    nonce = nonce or client.challenge(pod.run_id).nonce
    request = AttestRequest(
        run_id=pod.run_id,
        nonce=nonce,
        purpose="key-agent",
        pod_id=pod.pod_id,
        role=pod.role,
        evidence=provider.collect(binding(pod, nonce, key)).to_json(),
        public_jwk=key.public_jwk,
    )
    return nonce, client.attest(request)


def audit(emu: EmulatorProcess, run_id: str | None, event: str) -> list[AuditEntry]:
    with emu.client("operator") as c:
        return [e for e in c.audit().entries if e.run_id == run_id and e.event == event]


def refusal(exc: JobRuntimeError) -> tuple[int | None, str | None]:
    """(HTTP status, remote code) of a refusal the client raised.

    Most arrive as ``ControlPlaneError`` with ``status`` and ``remote_code``; the client
    may instead raise the typed ``AttestationError`` of an ``attestation.*`` code, which
    carries the code as its own ``code`` and no status.
    """
    if isinstance(exc, ControlPlaneError):
        return exc.status, exc.remote_code
    return None, exc.code


def assert_refused(
    emu: EmulatorProcess,
    exc: pytest.ExceptionInfo[JobRuntimeError],
    run_id: str | None,
    event: str,
    code: str,
    status: int,
) -> None:
    """The exact code (and status), and an audit entry of ``event`` giving that reason."""
    got_status, got_code = refusal(exc.value)
    assert got_code == code, exc.value
    assert got_status in (status, None), exc.value
    reasons = [e.details["reason"] for e in audit(emu, run_id, event)]
    assert code in reasons, reasons


def key_agent_attestations(emu: EmulatorProcess, run_id: str) -> list[AuditEntry]:
    """``run.attested`` entries of key-agent sessions (the verifier may attest too)."""
    entries = audit(emu, run_id, "run.attested")
    return [e for e in entries if e.details["purpose"] == "key-agent"]


def released(emu: EmulatorProcess, run_id: str) -> list[str]:
    return [e.details["dataset"] for e in audit(emu, run_id, "kms.released")]


# --- the happy path --------------------------------------------------------------------


def test_release_two_datasets_to_one_attested_session(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs)
    s = session(emulator, run.pod)
    answer = s.attest()
    assert answer.measurement == EMULATED_MEASUREMENT.hex()
    assert answer.evidence_kind == "emulated"
    key_a = s.release("customers_a")
    key_b = s.release("customers_b")
    assert len(key_a) == 32 and len(key_b) == 32 and key_a != key_b
    assert (s.attestations, s.releases) == (1, 2)
    # An executor pod of the same run (its own verifier, pod id and ephemeral key) gets
    # the same master key.
    other = session(emulator, verified_pod(runs, run.run_id, "executor"))
    assert other.release("customers_a") == key_a
    assert (other.attestations, other.releases) == (1, 1)
    assert sorted(released(emulator, run.run_id)) == ["customers_a", "customers_a", "customers_b"]
    entries = audit(emulator, run.run_id, "kms.released")
    assert {e.details["key_id"] for e in entries} == {
        run.key_ids["customers_a"],
        run.key_ids["customers_b"],
    }
    attested = key_agent_attestations(emulator, run.run_id)
    assert len(attested) == 2
    assert attested[0].details["evidence"] == "emulated"
    # Key material is nowhere in the audit log or the key's public description.
    with emulator.client("operator") as c:
        log = c.audit().model_dump_json()
    info = requests.get(
        f"{emulator.url}/v1/kms/keys/{run.key_ids['customers_a']}",
        headers={"Authorization": f"Bearer {emulator.token('operator')}"},
        timeout=10,
    ).text
    for form in (
        key_a.hex(),
        base64.b64encode(key_a).decode().rstrip("="),
        base64.urlsafe_b64encode(key_a).decode().rstrip("="),
    ):
        assert form not in log
        assert form not in info


def test_output_dataset_key_is_released_too(emulator: EmulatorProcess, runs: Runs) -> None:
    run = keyed_run(emulator, runs)
    assert len(session(emulator, run.pod).release("overlap")) == 32
    assert released(emulator, run.run_id) == ["overlap"]


# --- evidence refused at attest ---------------------------------------------------------


def test_bit_flipped_report_is_refused_at_attest(emulator: EmulatorProcess, runs: Runs) -> None:
    run = keyed_run(emulator, runs)
    s = session(emulator, run.pod, Tampered(emulated(emulator), flip_report_byte))
    with pytest.raises(JobRuntimeError) as exc:
        s.attest()
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "attestation.signature", 403)
    assert s.attestations == 0


def test_vcek_from_an_unknown_emulated_chain_is_refused(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs)
    stranger = EmulatedProvider(EmulatedTee.create(), measurement=EMULATED_MEASUREMENT)
    with pytest.raises(JobRuntimeError) as exc:
        session(emulator, run.pod, stranger).attest()
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "attestation.chain", 403)


def test_debug_guest_policy_is_refused_at_attest(emulator: EmulatorProcess, runs: Runs) -> None:
    run = keyed_run(emulator, runs)
    debug = emulated(emulator, policy=DEFAULT_GUEST_POLICY | DEBUG_BIT)
    with pytest.raises(JobRuntimeError) as exc:
        session(emulator, run.pod, debug).attest()
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "attestation.debug", 403)


def test_report_data_not_binding_the_request_is_refused(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs)
    s = session(emulator, run.pod, IgnoresReportData(emulated(emulator)))
    with pytest.raises(JobRuntimeError) as exc:
        s.attest()
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "attestation.report_data", 403)


def test_evidence_bound_to_another_ephemeral_key_is_refused(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    """REPORT_DATA binds key A, the request offers key B: B must not get a session."""
    run = keyed_run(emulator, runs)
    bound, offered = EphemeralKey(), EphemeralKey()
    with emulator.client("verifier") as c:
        nonce = c.challenge(run.run_id).nonce
        request = AttestRequest(
            run_id=run.run_id,
            nonce=nonce,
            purpose="key-agent",
            pod_id=run.pod.pod_id,
            role=run.pod.role,
            evidence=emulated(emulator).collect(binding(run.pod, nonce, bound)).to_json(),
            public_jwk=offered.public_jwk,
        )
        with pytest.raises(JobRuntimeError) as exc:
            c.attest(request)
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "attestation.report_data", 403)


# --- the key's release policy, at release ----------------------------------------------


def test_tcb_below_the_keys_minimum_is_refused_at_release(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    policy = DEV_POLICY.model_copy(update={"minimum_tcb": {"snp": 255}})
    run = keyed_run(emulator, runs, policy)
    s = session(emulator, run.pod)
    s.attest()  # the evidence is genuine; only this key's policy refuses it
    with pytest.raises(JobRuntimeError) as exc:
        s.release("customers_a")
    assert_refused(emulator, exc, run.run_id, "kms.release_denied", "attestation.tcb_too_low", 403)
    assert released(emulator, run.run_id) == []


def test_disallowed_measurement_is_refused_at_release(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    """The session opens (the control plane's key-agent policy accepts the pod), but this
    key allows only another measurement."""
    policy = DEV_POLICY.model_copy(update={"measurements": ["ee" * 48]})
    run = keyed_run(emulator, runs, policy)
    s = session(emulator, run.pod)
    s.attest()
    with pytest.raises(JobRuntimeError) as exc:
        s.release("customers_b")
    assert_refused(emulator, exc, run.run_id, "kms.release_denied", "attestation.measurement", 403)
    assert released(emulator, run.run_id) == []


def test_measurement_outside_the_purpose_policy_opens_no_session(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs)
    s = session(emulator, run.pod, emulated(emulator, measurement=bytes.fromhex("ee" * 48)))
    with pytest.raises(JobRuntimeError) as exc:
        s.attest()
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "attestation.measurement", 403)
    assert key_agent_attestations(emulator, run.run_id) == []


def test_emulated_evidence_under_a_production_policy_is_refused(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs, ReleasePolicy(measurements=[EMULATED_MEASUREMENT.hex()]))
    s = session(emulator, run.pod)
    s.attest()
    with pytest.raises(JobRuntimeError) as exc:
        s.release("customers_a")
    assert_refused(emulator, exc, run.run_id, "kms.release_denied", "attestation.emulated", 403)
    assert released(emulator, run.run_id) == []


# --- nonces --------------------------------------------------------------------------------


def test_stale_nonce_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBRUNTIME_KMS_NONCE_TTL", "0.5")
    with EmulatorProcess(tmp_path / "emulator") as emu:
        run = keyed_run(emu, Runs(emu, tmp_path))
        with emu.client("verifier") as c:
            nonce = c.challenge(run.run_id).nonce
            time.sleep(1.0)
            with pytest.raises(JobRuntimeError) as exc:
                attest_by_hand(c, run.pod, emulated(emu), EphemeralKey(), nonce)
        assert_refused(emu, exc, run.run_id, "kms.attest_denied", "kms.nonce_stale", 409)
        # A fresh nonce, used at once, still works on this emulator.
        assert len(session(emu, run.pod).release("customers_a")) == 32


def test_reused_invented_and_foreign_nonces_are_refused(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs)
    other = keyed_run(emulator, runs)
    provider, key = emulated(emulator), EphemeralKey()
    with emulator.client("verifier") as c:
        nonce, answer = attest_by_hand(c, run.pod, provider, key)
        assert answer.evidence_kind == "emulated"
        with pytest.raises(JobRuntimeError) as exc:
            attest_by_hand(c, run.pod, provider, key, nonce)
        assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "kms.nonce_reused", 409)
        with pytest.raises(JobRuntimeError) as exc:
            attest_by_hand(c, run.pod, provider, key, secrets.token_hex(32))
        assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "kms.nonce_unknown", 409)
        # A nonce issued for another run is unknown to this one.
        foreign = c.challenge(other.run_id).nonce
        with pytest.raises(JobRuntimeError) as exc:
            attest_by_hand(c, run.pod, provider, key, foreign)
        assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "kms.nonce_unknown", 409)
    assert len(key_agent_attestations(emulator, run.run_id)) == 1


# --- the run and its spec -----------------------------------------------------------------


def test_dataset_outside_the_spec_is_refused(emulator: EmulatorProcess, runs: Runs) -> None:
    run = keyed_run(emulator, runs)
    s = session(emulator, run.pod)
    with pytest.raises(JobRuntimeError) as exc:
        s.release("someone_elses_data")
    assert_refused(emulator, exc, run.run_id, "kms.release_denied", "kms.dataset_not_in_spec", 403)
    assert s.releases == 0


def test_dataset_without_a_key_is_refused(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit(
        inputs=[
            {
                "name": "orphan",
                "uri": "file:///data/x",
                "key_id": f"org-a/never-created-{secrets.token_hex(6)}",
                "owner": "org-a",
            }
        ],
        outputs=[],
    )
    runs.approve(run_id, "org-a")
    pod = verified_pod(runs, run_id)
    with pytest.raises(JobRuntimeError) as exc:
        session(emulator, pod).release("orphan")
    assert_refused(emulator, exc, run_id, "kms.release_denied", "kms.key_unknown", 404)


def test_invalid_session_token_is_refused(emulator: EmulatorProcess) -> None:
    with emulator.client("verifier") as c, pytest.raises(JobRuntimeError) as exc:
        c.release(secrets.token_urlsafe(32), "customers_a")
    assert_refused(emulator, exc, None, "kms.release_denied", "kms.session_invalid", 403)


def test_unverified_run_is_refused_at_attest(emulator: EmulatorProcess, runs: Runs) -> None:
    run = keyed_run(emulator, runs, verify=False)  # approved, never claimed
    with pytest.raises(JobRuntimeError) as exc:
        session(emulator, run.pod).attest()
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "kms.run_unverified", 409)


def test_run_cancelled_after_attestation_is_refused_at_release(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs)
    s = session(emulator, run.pod)
    assert len(s.release("customers_a")) == 32
    with emulator.client("operator") as c:
        c.cancel(run.run_id, "test: revoke keys")
    with pytest.raises(JobRuntimeError) as exc:
        s.release("customers_b")
    assert_refused(emulator, exc, run.run_id, "kms.release_denied", "kms.run_cancelled", 409)
    assert released(emulator, run.run_id) == ["customers_a"]


def test_cancelled_run_is_refused_at_attest(emulator: EmulatorProcess, runs: Runs) -> None:
    run = keyed_run(emulator, runs)
    with emulator.client("submitter") as c:
        c.cancel(run.run_id)
    with pytest.raises(JobRuntimeError) as exc:
        session(emulator, run.pod).attest()
    assert_refused(emulator, exc, run.run_id, "kms.attest_denied", "kms.run_cancelled", 409)


def test_key_of_an_org_that_did_not_approve_is_not_released(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    victim = f"org-b/customers-{secrets.token_hex(6)}"
    with emulator.client("owner:org-b") as c:
        c.create_key(victim, DEV_POLICY)
    run_id = runs.submit(
        inputs=[{"name": "loot", "uri": "file:///data/b", "key_id": victim, "owner": "org-a"}],
        outputs=[],
    )
    runs.approve(run_id, "org-a")  # org-a is the only required owner; org-b never approves
    pod = verified_pod(runs, run_id)
    with pytest.raises(ControlPlaneError) as exc:
        session(emulator, pod).release("loot")
    assert exc.value.status == 403
    assert exc.value.remote_code == "kms.key_owner"
    assert released(emulator, run_id) == []


# --- the owners' key API ----------------------------------------------------------------


def test_owner_key_api(emulator: EmulatorProcess) -> None:
    key_id = f"org-a/owned-{secrets.token_hex(6)}"
    with emulator.client("owner:org-a") as a:
        info = a.create_key(key_id, DEV_POLICY)
        assert (info.key_id, info.owner) == (key_id, "org-a")
        assert info.release_policy == DEV_POLICY
        # Another org's namespace is not the caller's.
        with pytest.raises(AuthError) as exc:
            a.create_key(f"org-b/planted-{secrets.token_hex(6)}", DEV_POLICY)
        assert (exc.value.status, exc.value.remote_code) == (403, "auth.forbidden")
        # Key ids are unique; the second create changes nothing.
        with pytest.raises(ControlPlaneError) as exc2:
            a.create_key(key_id, ReleasePolicy(measurements=["00" * 48]))
        assert (exc2.value.status, exc2.value.remote_code) == (409, "kms.key_exists")
        assert a.key_info(key_id).release_policy == DEV_POLICY
    # The operator may read it, org-b may not; nobody sees key material.
    with emulator.client("operator") as op:
        assert op.key_info(key_id) == info
    with emulator.client("owner:org-b") as b, pytest.raises(AuthError) as exc3:
        b.key_info(key_id)
    assert (exc3.value.status, exc3.value.remote_code) == (403, "auth.forbidden")
    body = requests.get(
        f"{emulator.url}/v1/kms/keys/{key_id}",
        headers={"Authorization": f"Bearer {emulator.token('owner:org-a')}"},
        timeout=10,
    ).json()
    assert set(body) == {"key_id", "owner", "release_policy", "created_at"}
    created = audit(emulator, None, "kms.key_created")
    assert [e.details for e in created if e.details["key_id"] == key_id] == [{"key_id": key_id}]


def test_pods_cannot_create_keys(emulator: EmulatorProcess) -> None:
    with emulator.client("verifier") as c, pytest.raises(AuthError) as exc:
        c.create_key(f"org-a/pod-{secrets.token_hex(6)}", DEV_POLICY)
    assert (exc.value.status, exc.value.remote_code) == (403, "auth.forbidden")


# --- the wrapped key --------------------------------------------------------------------


def test_jwe_opens_only_with_the_sessions_ephemeral_key(
    emulator: EmulatorProcess, runs: Runs
) -> None:
    run = keyed_run(emulator, runs)
    key = EphemeralKey()
    with emulator.client("verifier") as c:
        _, answer = attest_by_hand(c, run.pod, emulated(emulator), key)
        wrapped = c.release(answer.session, "customers_a")
    assert wrapped.key_id == run.key_ids["customers_a"]
    assert len(key.unwrap(wrapped.jwe)) == 32
    with pytest.raises(KeyWrapError) as exc:
        EphemeralKey().unwrap(wrapped.jwe)
    assert exc.value.code == "keyrelease.wrap"
