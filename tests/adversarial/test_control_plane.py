"""The control plane's run state machine and its callers, attacked over HTTP.

Whoever controls the namespace holds the pods' bearer token and can call any route
in any order, concurrently; owners of one organisation can try another's things.
Each test asserts the exact status and code and that the run's state, approvals,
sessions and keys did not move.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from jobruntime.keyrelease.jwe import EphemeralKey
from tests.adversarial.helpers import audited, nothing_released, refused
from tests.conftest import DEV_POLICY, Runs
from tests.sessions import TestPod, api

FINAL = {"state": "failed", "final": True}


def at(runs: Runs, where: str) -> tuple[str, TestPod | None]:
    """A run brought to ``where`` by the legal path; the claiming pod once there is one."""
    run_id = runs.submit(**runs.datasets())
    if where == "pending_approval":
        runs.approve(run_id, "org-a")  # one of its two owners
        return run_id, None
    if where == "cancelled":
        assert api(runs.emu, "operator", "POST", f"/runs/{run_id}/cancel", {"reason": "r"}).ok
        return run_id, None
    runs.approve(run_id)
    if where == "approved":
        return run_id, None
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    if where == "failed":
        _final(runs, pod)
    return run_id, pod


def _final(runs: Runs, pod: TestPod) -> None:
    from jobruntime.controlplane.api import Heartbeat, SignedHeartbeat
    from jobruntime.keyrelease import jwe
    from jobruntime.spec.codec import canonical
    from jobruntime.spec.models import utcnow

    beat = Heartbeat(run_id=pod.run_id, seq=0, at=utcnow(), **FINAL)
    jws = jwe.sign(pod.keys.get("heartbeat") or _heartbeat_key(pod), canonical(beat))
    body = SignedHeartbeat(session=pod.tokens["heartbeat"], jws=jws).model_dump()
    resp = api(runs.emu, "verifier", "POST", f"/runs/{pod.run_id}/heartbeats", body)
    assert resp.status_code == 200, resp.text


def _heartbeat_key(pod: TestPod) -> EphemeralKey:
    pod.session("heartbeat")
    return pod.keys["heartbeat"]


Action = Callable[[Runs, str, "TestPod | None"], requests.Response]


def _approve(runs: Runs, run_id: str, pod: TestPod | None) -> requests.Response:
    body = {"envelope": runs.approval(run_id, "org-b")}
    return api(runs.emu, "owner:org-b", "POST", f"/runs/{run_id}/approvals", body)


def _claim(runs: Runs, run_id: str, pod: TestPod | None) -> requests.Response:
    return TestPod(runs.emu, run_id).claim()


def _workload(runs: Runs, run_id: str, pod: TestPod | None) -> requests.Response:
    swap = {"isolation": "pod", "host_data": {"driver": "ee" * 32, "executor": "ef" * 32}}
    return api(runs.emu, "submitter", "POST", f"/runs/{run_id}/workload", swap)


def _key_agent(runs: Runs, run_id: str, pod: TestPod | None) -> requests.Response:
    return (pod or TestPod(runs.emu, run_id)).attest("key-agent")


ACTIONS: dict[str, Action] = {
    "approve": _approve,
    "claim": _claim,
    "swap workload": _workload,
    "key-agent session": _key_agent,
}

# (state reached legally, action out of order) -> the exact refusal.
OUT_OF_ORDER: dict[tuple[str, str], tuple[int, str]] = {
    ("pending_approval", "claim"): (409, "claim.not_approved"),
    ("pending_approval", "swap workload"): (409, "run.approval_started"),
    ("pending_approval", "key-agent session"): (409, "kms.run_unverified"),
    ("approved", "approve"): (409, "run.approved"),
    ("approved", "swap workload"): (409, "run.approval_started"),
    ("approved", "key-agent session"): (409, "kms.run_unverified"),
    ("claimed", "approve"): (409, "run.claimed"),
    ("claimed", "claim"): (409, "claim.replayed"),
    ("claimed", "swap workload"): (409, "run.approval_started"),
    ("cancelled", "approve"): (409, "run.cancelled"),
    ("cancelled", "claim"): (409, "claim.cancelled"),
    ("cancelled", "swap workload"): (409, "run.approval_started"),
    ("cancelled", "key-agent session"): (409, "kms.run_cancelled"),
    ("failed", "approve"): (409, "run.failed"),
    ("failed", "claim"): (409, "claim.replayed"),
    ("failed", "swap workload"): (409, "run.approval_started"),
    ("failed", "key-agent session"): (409, "kms.run_finished"),
}


@pytest.mark.attack(
    id="transitions-out-of-order",
    threat="a run moved out of order: approved or re-approved late, claimed early or twice, "
    "its pods swapped after approval, keyed before its claim or after its end",
    adversary="whoever controls the namespace; an owner; the submitter",
    mechanism="run state moves forward only, each transition a compare-and-set from its "
    "expected state in one transaction",
)
@pytest.mark.parametrize(
    ("where", "action"), list(OUT_OF_ORDER), ids=[f"{w}-{a}" for w, a in OUT_OF_ORDER]
)
def test_every_transition_out_of_order_is_refused(runs: Runs, where: str, action: str) -> None:
    run_id, pod = at(runs, where)
    with runs.emu.client("operator") as c:
        before = c.status(run_id)
    status, code = OUT_OF_ORDER[(where, action)]
    refused(ACTIONS[action](runs, run_id, pod), status, code)
    with runs.emu.client("operator") as c:
        after = c.status(run_id)
    assert (after.state, after.spec_digest, after.approved_by) == (
        before.state,
        before.spec_digest,
        before.approved_by,
    )
    nothing_released(runs.emu, run_id)


@pytest.mark.attack(
    id="key-agent-session-race",
    threat="many key-agent attestations of one pod at once, to hold several sessions (and "
    "so several releases) for one pod",
    adversary="whoever controls the namespace (can start requests concurrently)",
    mechanism="one session per (run, pod, purpose), enforced by the database's uniqueness "
    "inside the insert's transaction",
)
def test_concurrent_key_agent_attestations_of_one_pod_open_one_session(runs: Runs) -> None:
    run_id = runs.approved(**runs.datasets())
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    twins = [TestPod(runs.emu, run_id, pod_id=pod.pod_id) for _ in range(8)]
    with ThreadPoolExecutor(len(twins)) as pool:
        answers = list(pool.map(lambda t: t.attest("key-agent"), twins))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7
    for a in answers:
        if a.status_code == 409:
            refused(a, 409, "kms.session_exists")
    sessions = [d for d in audited(runs.emu, run_id, "run.attested") if d["purpose"] == "key-agent"]
    assert len(sessions) == 1


@pytest.mark.attack(
    id="publish-race",
    threat="concurrent publishes of the same dataset version, to record two manifests for one "
    "version or skip one",
    adversary="a compromised pod's key agent, another organisation racing the run",
    mechanism="a version is recorded only as exactly one more than the recorded one, "
    "compare-and-set in one transaction",
)
def test_concurrent_publishes_of_one_version_record_one(runs: Runs) -> None:
    run_id = runs.approved(**runs.datasets())
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    pod.session("key-agent")
    digests = [f"sha256:{i:02x}" + "ab" * 31 for i in range(6)]
    with ThreadPoolExecutor(len(digests)) as pool:
        answers = list(pool.map(lambda d: pod.publish("overlap", 1, d), digests))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 5
    codes = {a.json()["error"]["code"] for a in answers if a.status_code == 409}
    assert codes == {"dataset.version_conflict"}
    published = audited(runs.emu, run_id, "dataset.published")
    assert len(published) == 1


@pytest.mark.attack(
    id="organisation-confusion",
    threat="an owner acts on another organisation's keys: creates one in its namespace, "
    "loosens its release policy, or takes its master key through owner access",
    adversary="an owner of another organisation (a legitimate bearer token)",
    mechanism="keys belong to the organisation in their id; every key route checks the "
    "caller's organisation on the server",
)
def test_an_owner_cannot_touch_another_organisations_keys(runs: Runs) -> None:
    key_id = f"org-a/victim-{secrets.token_hex(4)}"
    with runs.emu.client("owner:org-a") as c:
        c.create_key(key_id, DEV_POLICY.model_copy(update={"isolation": ["pod"]}))
    policy = DEV_POLICY.model_dump(mode="json")
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/kms/keys",
            {"key_id": f"org-a/planted-{secrets.token_hex(4)}", "release_policy": policy},
        ),
        ("PUT", f"/kms/keys/{key_id}/policy", {"release_policy": policy}),
        ("POST", f"/kms/keys/{key_id}/owner-access", {"public_jwk": EphemeralKey().public_jwk}),
        ("GET", f"/kms/keys/{key_id}", {}),
    ]
    for method, path, body in attempts:
        refused(api(runs.emu, "owner:org-b", method, path, body or None), 403, "auth.forbidden")
    mine = api(runs.emu, "owner:org-a", "GET", f"/kms/keys/{key_id}").json()
    assert mine["release_policy"]["isolation"] == ["pod"]
    listed = api(runs.emu, "operator", "GET", "/kms/keys").json()["keys"]
    assert [k["key_id"] for k in listed if k["key_id"].startswith("org-a/planted-")] == []
    with runs.emu.client("operator") as c:
        entries = c.audit().entries
    touched = [e for e in entries if e.details.get("key_id") == key_id]
    assert [e.event for e in touched] == ["kms.key_created"]
