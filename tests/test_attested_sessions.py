"""Pod actions need attested sessions: the control plane's rules, attacked over HTTP.

Each test plays the adversary the design names (whoever controls the namespace holds
the pods' bearer token and can run any code it likes outside the TEE) and asserts
the exact refusal, that it was audited, and that nothing was claimed or released.
Evidence comes from the emulated TEE with launch parameters the test chooses.
"""

from __future__ import annotations

import secrets
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import pytest
import requests

from jobruntime.attestation.emulated import DEFAULT_GUEST_POLICY
from jobruntime.attestation.errors import (
    ChipNotAllowedError,
    EmptyPolicyError,
    MigrationAgentError,
    SingleSocketError,
    SmtError,
)
from jobruntime.attestation.policy import AllOf as ReportAllOf
from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.attestation.report import AttestationReport
from jobruntime.controlplane.api import EvidenceKind, PublishVersion, ReleasePolicy
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.jwe import EphemeralKey
from jobruntime.keyrelease.policy import AllOf, Appraisal, build
from tests.conftest import DEV_POLICY, Runs
from tests.sessions import TestPod, api, error_code

MIGRATE_MA, SINGLE_SOCKET = 1 << 18, 1 << 20
H_DRIVER, H_EXECUTOR = bytes([1]) * 32, bytes([2]) * 32


def events(emu: EmulatorProcess, run_id: str | None, name: str) -> list[dict[str, Any]]:
    with emu.client("operator") as c:
        return [e.details for e in c.audit().entries if e.run_id == run_id and e.event == name]


def state(emu: EmulatorProcess, run_id: str) -> str:
    with emu.client("operator") as c:
        return c.status(run_id).state.value


def claimed(runs: Runs, **overrides: Any) -> tuple[str, TestPod]:
    """A claimed run whose output URI is its own (other tests publish versions too)."""
    uris = {"overlap": f"file:///data/o-{secrets.token_hex(4)}"}
    run_id = runs.approved(**runs.datasets(uris=uris), **overrides)
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    return run_id, pod


def pod_isolated(runs: Runs, policy: ReleasePolicy | None = None) -> str:
    """An approved run in pod isolation whose spec names H_DRIVER and H_EXECUTOR."""
    workload = {
        "isolation": "pod",
        "host_data": {"driver": H_DRIVER.hex(), "executor": H_EXECUTOR.hex()},
    }
    return runs.approved(**runs.datasets(policy), workload=workload)


# --- the claim ----------------------------------------------------------------------


def test_a_claim_without_evidence_claims_nothing(runs: Runs) -> None:
    run_id = runs.approved()
    body = {"claim_id": secrets.token_hex(32), "session": "made-up"}
    resp = api(runs.emu, "verifier", "POST", f"/runs/{run_id}/claim", body)
    assert (resp.status_code, error_code(resp)) == (403, "kms.session_invalid")
    resp = api(runs.emu, "verifier", "POST", f"/runs/{run_id}/claim", {"claim_id": "ab" * 32})
    assert (resp.status_code, error_code(resp)) == (422, "request.invalid")
    assert state(runs.emu, run_id) == "approved"
    assert [d["reason"] for d in events(runs.emu, run_id, "claim.denied")] == [
        "kms.session_invalid"
    ]


def test_a_claim_with_another_runs_session_is_refused(runs: Runs) -> None:
    mine, theirs = runs.approved(), runs.approved()
    other = TestPod(runs.emu, theirs)
    body = {"claim_id": secrets.token_hex(32), "session": other.session("verifier")}
    resp = api(runs.emu, "verifier", "POST", f"/runs/{mine}/claim", body)
    assert (resp.status_code, error_code(resp)) == (403, "kms.session_run")
    assert state(runs.emu, mine) == state(runs.emu, theirs) == "approved"


def test_an_executor_pods_verifier_session_cannot_claim(runs: Runs) -> None:
    run_id, _ = claimed(runs)
    executor = TestPod(runs.emu, run_id, role="executor")
    body = {"claim_id": secrets.token_hex(32), "session": executor.session("verifier")}
    resp = api(runs.emu, "verifier", "POST", f"/runs/{run_id}/claim", body)
    assert (resp.status_code, error_code(resp)) == (403, "claim.not_driver")


def test_evidence_that_does_not_bind_the_spec_digest_opens_no_session(runs: Runs) -> None:
    run_id = runs.approved()
    pod = TestPod(runs.emu, run_id)
    resp = pod.attest("verifier", spec_digest="sha256:" + "00" * 32)
    assert (resp.status_code, error_code(resp)) == (403, "attestation.report_data")
    assert pod.tokens == {}
    assert state(runs.emu, run_id) == "approved"
    denied = events(runs.emu, run_id, "kms.attest_denied")
    assert [d["reason"] for d in denied] == ["attestation.report_data"]


# --- key release only to the key agent of a pod of the run --------------------------


@pytest.mark.parametrize("purpose", ["verifier", "heartbeat"])
def test_a_verifier_or_heartbeat_session_gets_no_key(runs: Runs, purpose: str) -> None:
    run_id, pod = claimed(runs)
    resp = pod.release("customers_a", purpose=purpose)
    assert (resp.status_code, error_code(resp)) == (403, "kms.session_purpose")
    assert events(runs.emu, run_id, "kms.released") == []
    denied = events(runs.emu, run_id, "kms.release_denied")
    assert [d["reason"] for d in denied] == ["kms.session_purpose"]
    # Nor may it publish a dataset version.
    body = {
        "session": pod.session(purpose),
        "dataset": "overlap",
        "version": 1,
        "manifest_digest": "sha256:" + "ab" * 32,
    }
    resp = api(runs.emu, "verifier", "POST", "/datasets/publish", body)
    assert (resp.status_code, error_code(resp)) == (403, "kms.session_purpose")


def test_a_vmpl3_report_opens_no_session_and_gets_no_key(runs: Runs) -> None:
    run_id, pod = claimed(runs)
    resp = pod.attest("key-agent", vmpl=3)
    assert (resp.status_code, error_code(resp)) == (403, "attestation.vmpl")
    assert "key-agent" not in pod.tokens
    assert events(runs.emu, run_id, "kms.released") == []


def test_a_second_key_agent_session_for_the_same_pod_is_refused(runs: Runs) -> None:
    run_id, pod = claimed(runs)
    assert pod.release("customers_a").status_code == 200
    again = pod.attest("key-agent")
    assert (again.status_code, error_code(again)) == (409, "kms.session_exists")
    agents = [e for e in events(runs.emu, run_id, "run.attested") if e["purpose"] == "key-agent"]
    assert len(agents) == 1


def test_a_pod_that_did_not_claim_or_join_the_run_gets_no_session(runs: Runs) -> None:
    run_id, _ = claimed(runs)
    stranger = TestPod(runs.emu, run_id)  # the same code, another pod
    for purpose in ("key-agent", "heartbeat"):
        resp = stranger.attest(purpose)
        assert (resp.status_code, error_code(resp)) == (403, "kms.pod_not_of_run")
    # An executor pod joins through its own verifier, and only then gets a key agent.
    executor = TestPod(runs.emu, run_id, role="executor")
    resp = executor.attest("key-agent")
    assert (resp.status_code, error_code(resp)) == (403, "kms.pod_not_of_run")
    assert executor.attest("verifier").status_code == 200
    assert executor.release("customers_b").status_code == 200
    hb = executor.attest("heartbeat")
    assert (hb.status_code, error_code(hb)) == (403, "kms.pod_role")
    # Outputs are published from the driver's commit only.
    body = {
        "session": executor.session("key-agent"),
        "dataset": "overlap",
        "version": 1,
        "manifest_digest": "sha256:" + "ab" * 32,
    }
    resp = api(runs.emu, "verifier", "POST", "/datasets/publish", body)
    assert (resp.status_code, error_code(resp)) == (403, "kms.pod_role")
    assert [e["dataset"] for e in events(runs.emu, run_id, "kms.released")] == ["customers_b"]


def test_node_evidence_against_a_key_that_allows_only_pod_is_refused(runs: Runs) -> None:
    pod_only = DEV_POLICY.model_copy(update={"isolation": ["pod"]})
    run_id = runs.approved(**runs.datasets(pod_only), workload={"isolation": "node"})
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    resp = pod.release("customers_a")
    assert (resp.status_code, error_code(resp)) == (403, "attestation.isolation")
    assert events(runs.emu, run_id, "kms.released") == []


def test_a_new_key_allows_pod_isolation_only() -> None:
    assert ReleasePolicy(measurements=[EMULATED_MEASUREMENT.hex()]).isolation == ["pod"]


# --- HOST_DATA per role ------------------------------------------------------------


def test_host_data_must_be_the_specs_for_the_pods_role(runs: Runs) -> None:
    run_id = pod_isolated(runs)
    # The executor pod's HOST_DATA presented as the driver's, and a made-up one.
    for role, host_data in (("driver", H_EXECUTOR), ("driver", bytes(32))):
        resp = TestPod(runs.emu, run_id, role=role, host_data=host_data).claim()
        assert (resp.status_code, error_code(resp)) == (403, "attestation.host_data")
    assert state(runs.emu, run_id) == "approved"
    driver = TestPod(runs.emu, run_id, host_data=H_DRIVER)
    assert driver.claim().status_code == 200
    assert driver.release("customers_a").status_code == 200
    as_executor = TestPod(runs.emu, run_id, role="executor", host_data=H_DRIVER)
    resp = as_executor.attest("verifier")
    assert (resp.status_code, error_code(resp)) == (403, "attestation.host_data")
    executor = TestPod(runs.emu, run_id, role="executor", host_data=H_EXECUTOR)
    assert executor.attest("verifier").status_code == 200
    assert executor.release("customers_a").status_code == 200


def test_owners_approve_only_a_complete_workload_and_approve_it_too(runs: Runs) -> None:
    run_id = runs.submit(**runs.datasets(), workload={"isolation": "pod"})
    resp = api(
        runs.emu,
        "owner:org-a",
        "POST",
        f"/runs/{run_id}/approvals",
        {"envelope": runs.approval(run_id, "org-a")},
    )
    assert (resp.status_code, error_code(resp)) == (409, "run.workload_pending")
    before = runs.signed(run_id).digest
    workload = {"isolation": "pod", "host_data": {"driver": "11" * 32, "executor": "22" * 32}}
    resp = api(runs.emu, "submitter", "POST", f"/runs/{run_id}/workload", workload)
    assert resp.status_code == 200, resp.text
    signed = runs.signed(run_id)
    assert signed.digest == resp.json()["spec_digest"] != before
    assert signed.spec.workload.host_data == {"driver": "11" * 32, "executor": "22" * 32}
    runs.approve(run_id, "org-a")
    # Once an owner approved, nobody can swap the pods under them.
    other = {"isolation": "pod", "host_data": {"driver": "33" * 32, "executor": "22" * 32}}
    resp = api(runs.emu, "operator", "POST", f"/runs/{run_id}/workload", other)
    assert (resp.status_code, error_code(resp)) == (409, "run.approval_started")
    assert runs.signed(run_id).digest == signed.digest


# --- the declarative release policy, as composable checks --------------------------


def appraisal(
    isolation: Literal["pod", "node"] = "pod",
    *,
    policy: int = DEFAULT_GUEST_POLICY,
    vmpl: int = 0,
) -> Appraisal:
    tee = load_tee_for_unit()
    report = tee.report(
        report_data=bytes(64),
        measurement=EMULATED_MEASUREMENT,
        host_data=bytes(32),
        policy=policy,
        guest_svn=0,
        vmpl=vmpl,
    )
    parsed = AttestationReport.parse(report)
    return Appraisal(EvidenceKind.EMULATED, isolation, parsed, tee.product)


_TEE: list[Any] = []


def load_tee_for_unit() -> Any:
    from jobruntime.attestation.emulated import EmulatedTee

    if not _TEE:
        _TEE.append(EmulatedTee.create())
    return _TEE[0]


@pytest.mark.parametrize(
    ("change", "launch", "error"),
    [
        ({}, {"policy": DEFAULT_GUEST_POLICY | MIGRATE_MA}, MigrationAgentError),
        ({"allow_smt": False}, {}, SmtError),
        ({"require_single_socket": True}, {}, SingleSocketError),
        ({"chip_ids": ["ab" * 64]}, {}, ChipNotAllowedError),
    ],
)
def test_release_policy_rules(change: dict[str, Any], launch: dict[str, Any], error: type) -> None:
    policy = DEV_POLICY.model_copy(update=change)
    with pytest.raises(error):
        build(policy, load_tee_for_unit().product).verify(appraisal(**launch))


def test_empty_policies_refuse() -> None:
    with pytest.raises(EmptyPolicyError):
        AllOf(()).verify(appraisal())
    with pytest.raises(EmptyPolicyError):
        ReportAllOf().verify(appraisal().report)


def test_policy_accepts_what_it_names() -> None:
    policy = DEV_POLICY.model_copy(
        update={
            "require_single_socket": True,
            "allow_smt": False,
            "chip_ids": [load_tee_for_unit().chip_id.hex()],
            "vmpls": [0, 1],
        }
    )
    launch = appraisal(policy=(DEFAULT_GUEST_POLICY & ~(1 << 16)) | SINGLE_SOCKET, vmpl=1)
    build(policy, load_tee_for_unit().product).verify(launch)


# --- run state moves forward only, compare-and-set (races an adversary can start) ---


def post_approval(runs: Runs, run_id: str, owner: str, env: Any) -> Any:
    return api(runs.emu, f"owner:{owner}", "POST", f"/runs/{run_id}/approvals", {"envelope": env})


def test_an_approval_races_a_workload_swap_and_the_swap_never_wins_silently(runs: Runs) -> None:
    """The owner signs digest D; a workload change racing it must not leave the run
    approved with another spec (the attack: approved state, attacker's HOST_DATA)."""
    honest = {"isolation": "pod", "host_data": {"driver": "11" * 32, "executor": "22" * 32}}
    evil = {"isolation": "pod", "host_data": {"driver": "ee" * 32, "executor": "ef" * 32}}
    for _ in range(12):
        run_id = runs.submit(**runs.datasets(), workload=honest)
        approvals = {o: runs.approval(run_id, o) for o in ("org-a", "org-b")}
        signed = runs.signed(run_id).digest
        post_approval(runs, run_id, "org-a", approvals["org-a"])
        with ThreadPoolExecutor(2) as pool:
            approve = pool.submit(post_approval, runs, run_id, "org-b", approvals["org-b"])
            swap = pool.submit(api, runs.emu, "submitter", "POST", f"/runs/{run_id}/workload", evil)
            approve.result(), swap.result()
        with runs.emu.client("operator") as c:
            status = c.status(run_id)
        if status.state == "approved":
            assert status.spec_digest == signed  # the owners' digest, never the swapped one
        pod = TestPod(runs.emu, run_id, host_data=bytes.fromhex("ee" * 32))
        assert pod.claim().status_code != 200


def test_an_approval_of_an_older_digest_counts_for_nothing(runs: Runs) -> None:
    run_id = runs.submit(**runs.datasets(), workload={"isolation": "pod"})
    first = {"isolation": "pod", "host_data": {"driver": "11" * 32, "executor": "22" * 32}}
    assert api(runs.emu, "submitter", "POST", f"/runs/{run_id}/workload", first).ok
    stale = runs.approval(run_id, "org-a")
    second = {"isolation": "pod", "host_data": {"driver": "33" * 32, "executor": "22" * 32}}
    assert api(runs.emu, "submitter", "POST", f"/runs/{run_id}/workload", second).ok
    resp = post_approval(runs, run_id, "org-a", stale)
    assert (resp.status_code, error_code(resp)) == (400, "approval.invalid")
    with runs.emu.client("operator") as c:
        assert c.status(run_id).approved_by == {"org-a": 0, "org-b": 0}


def test_a_finished_run_cannot_be_approved_claimed_or_keyed_again(runs: Runs) -> None:
    run_id, pod = claimed(runs)
    assert pod.release("customers_a").status_code == 200
    final = {"state": "failed", "final": True}
    send_final(runs, pod, run_id, final)
    assert state(runs.emu, run_id) == "failed"
    late = post_approval(runs, run_id, "org-a", runs.approval(run_id, "org-a"))
    assert (late.status_code, error_code(late)) == (409, "run.failed")
    assert state(runs.emu, run_id) == "failed"
    again = TestPod(runs.emu, run_id).claim()
    assert (again.status_code, error_code(again)) == (409, "claim.replayed")
    old = pod.release("customers_b")
    assert (old.status_code, error_code(old)) == (409, "kms.run_finished")
    assert [e["dataset"] for e in events(runs.emu, run_id, "kms.released")] == ["customers_a"]


def test_an_approval_racing_a_cancel_never_undoes_it(runs: Runs) -> None:
    for _ in range(12):
        run_id = runs.submit(**runs.datasets())
        late = runs.approval(run_id, "org-b")
        post_approval(runs, run_id, "org-a", runs.approval(run_id, "org-a"))
        with ThreadPoolExecutor(2) as pool:
            cancel = pool.submit(
                api, runs.emu, "operator", "POST", f"/runs/{run_id}/cancel", {"reason": "r"}
            )
            pool.submit(post_approval, runs, run_id, "org-b", late).result()
            answered = cancel.result()
        if answered.status_code == 200:
            assert answered.json()["state"] == "cancelled"
            assert state(runs.emu, run_id) == "cancelled"
            assert TestPod(runs.emu, run_id).claim().status_code == 409


def test_keys_need_the_approvals_of_the_runs_current_digest_whatever_its_state(
    runs: Runs,
) -> None:
    """Defence in depth: a run whose stored state says approved (a state bug, simulated by
    writing the database) but whose approvals do not cover its digest gets no session."""
    run_id = runs.submit(**runs.datasets())
    db = sqlite3.connect(runs.emu.state / "emulator.db")
    try:
        db.execute("UPDATE runs SET state = 'approved' WHERE run_id = ?", (run_id,))
        db.commit()
    finally:
        db.close()
    resp = TestPod(runs.emu, run_id).attest("verifier")
    assert (resp.status_code, error_code(resp)) == (409, "kms.not_approved")
    assert state(runs.emu, run_id) == "approved"
    assert events(runs.emu, run_id, "run.claimed") == []


def send_final(runs: Runs, pod: TestPod, run_id: str, fields: dict[str, Any]) -> None:
    from jobruntime.controlplane.api import Heartbeat, SignedHeartbeat
    from jobruntime.keyrelease import jwe
    from jobruntime.spec.codec import canonical
    from jobruntime.spec.models import utcnow

    beat = Heartbeat(run_id=run_id, seq=0, at=utcnow(), **fields)
    token = pod.session("heartbeat")
    signed = SignedHeartbeat(session=token, jws=jwe.sign(pod.keys["heartbeat"], canonical(beat)))
    resp = api(runs.emu, "verifier", "POST", f"/runs/{run_id}/heartbeats", signed.model_dump())
    assert resp.status_code == 200, resp.text


def test_a_success_naming_a_version_another_party_published_ends_failed(runs: Runs) -> None:
    """The outcome names outputs this run's own key agent published, nothing else."""
    uri = f"file:///data/o-{secrets.token_hex(4)}"
    run_id = runs.approved(**runs.datasets(uris={"overlap": uri}))
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    overlap = runs.signed(run_id).spec.dataset("overlap")
    assert overlap is not None
    digest = "sha256:" + "ab" * 32
    body = {"uri": overlap.uri, "key_id": overlap.key_id, "version": 1, "manifest_digest": digest}
    assert api(runs.emu, "owner:org-a", "POST", "/datasets/publish", body).status_code == 200
    outputs = [{"dataset": "overlap", "version": 1, "manifest_digest": digest}]
    send_final(runs, pod, run_id, {"state": "succeeded", "final": True, "outputs": outputs})
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
    assert status.state == "failed"
    assert status.outcome_reason == (
        "run.output_mismatch: overlap v1 is not the last version this run published"
    )


def test_the_outcome_is_this_runs_publishes_whatever_was_published_since(runs: Runs) -> None:
    """A run's real success stands after another publish to the same dataset; a success
    that leaves out what the run published does not."""
    uri = f"file:///data/o-{secrets.token_hex(4)}"
    datasets = runs.datasets(uris={"overlap": uri})
    overlap = next(d for d in datasets["outputs"] if d["name"] == "overlap")
    outcomes = []
    for report in (True, False):
        run_id = runs.approved(**datasets)
        pod = TestPod(runs.emu, run_id)
        assert pod.claim().status_code == 200
        version = 1 + (0 if report else 2)
        digest = "sha256:" + f"{version:02x}" * 32
        assert pod.publish("overlap", version, digest).status_code == 200
        # Someone else publishes the next version of the same dataset meanwhile.
        other = {"uri": uri, "key_id": overlap["key_id"], "version": version + 1}
        other["manifest_digest"] = "sha256:" + "ee" * 32
        assert api(runs.emu, "owner:org-a", "POST", "/datasets/publish", other).status_code == 200
        named = [{"dataset": "overlap", "version": version, "manifest_digest": digest}]
        final = {"state": "succeeded", "final": True, "outputs": named if report else []}
        send_final(runs, pod, run_id, final)
        with runs.emu.client("operator") as c:
            status = c.status(run_id)
        outcomes.append((status.state.value, status.outcome_reason))
    assert outcomes == [
        ("succeeded", None),
        ("failed", "run.output_mismatch: overlap v3 was published by this run but not reported"),
    ]


def test_a_publish_needs_the_key_agents_signature_not_just_its_session_token(
    runs: Runs,
) -> None:
    run_id, pod = claimed(runs)
    digest = "sha256:" + "ab" * 32
    unsigned = pod.publish("overlap", 1, digest, sign=False)
    assert (unsigned.status_code, error_code(unsigned)) == (403, "dataset.unsigned")
    forged = PublishVersion(
        session=pod.session("key-agent"), dataset="overlap", version=1, manifest_digest=digest
    )
    forged.signature = jwe.sign(EphemeralKey(), forged.statement(run_id))
    resp = api(runs.emu, "verifier", "POST", "/datasets/publish", forged.model_dump())
    assert (resp.status_code, error_code(resp)) == (403, "dataset.forged")
    # Signed for another version than the one asked for.
    other = forged.model_copy(update={"version": 2})
    other.signature = jwe.sign(pod.keys["key-agent"], forged.statement(run_id))
    resp = api(runs.emu, "verifier", "POST", "/datasets/publish", other.model_dump())
    assert (resp.status_code, error_code(resp)) == (403, "dataset.forged")
    assert events(runs.emu, run_id, "dataset.published") == []
    assert pod.publish("overlap", 1, digest).status_code == 200


def test_huge_and_malformed_bodies_are_refused_before_parsing(runs: Runs) -> None:
    run_id = runs.approved()
    huge = {"claim_id": "ab" * 32, "session": "x" * (3 * 1024 * 1024)}
    for path in (
        f"/runs/{run_id}/claim",
        "/kms/attest",
        "/kms/release",
        f"/runs/{run_id}/workload",
    ):
        resp = api(runs.emu, "verifier", "POST", path, huge)
        assert (resp.status_code, error_code(resp)) == (413, "request.too_large")
    deep = "[" * 5_000 + "]" * 5_000
    resp = requests.post(
        f"{runs.emu.url}/v1/runs/{run_id}/workload",
        data=deep,
        headers={
            "Authorization": f"Bearer {runs.emu.token('submitter')}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert resp.status_code in (400, 422)
    assert "error" in resp.json()  # the API's error body, never a framework default
    assert state(runs.emu, run_id) == "approved"


def test_a_run_has_a_bounded_number_of_open_nonces(runs: Runs) -> None:
    run_id = runs.approved()
    for _ in range(256):
        assert api(runs.emu, "verifier", "POST", "/kms/challenge", {"run_id": run_id}).ok
    resp = api(runs.emu, "verifier", "POST", "/kms/challenge", {"run_id": run_id})
    assert (resp.status_code, error_code(resp)) == (429, "kms.too_many_challenges")
    # Another run is not starved by this one.
    other = runs.approved()
    assert api(runs.emu, "verifier", "POST", "/kms/challenge", {"run_id": other}).ok


def test_approvals_are_bounded_and_taken_only_while_pending(runs: Runs) -> None:
    run_id = runs.submit(**runs.datasets())
    padded = runs.approval(run_id, "org-a")
    sig = padded["signatures"][0]
    padded["signatures"] = [sig] + [{"keyid": f"{i:064x}", "sig": "AAAA"} for i in range(40)]
    resp = post_approval(runs, run_id, "org-a", padded)
    assert (resp.status_code, error_code(resp)) == (400, "approval.invalid")
    assert "over the limits" in resp.json()["error"]["message"]
    runs.approve(run_id)
    again = post_approval(runs, run_id, "org-a", runs.approval(run_id, "org-a"))
    assert (again.status_code, error_code(again)) == (409, "run.approved")
