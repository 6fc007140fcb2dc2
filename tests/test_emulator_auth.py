"""Authentication and authorisation of every emulator endpoint, over real HTTP.

The endpoint table below is the single source of truth: one test checks it covers
every path and method of ``docs/openapi.json``, so a new endpoint without auth
tests fails here.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from jobruntime.controlplane.api import OwnerKeyEnrolment
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.emulator.state import TOKENS, init_state
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from tests.conftest import Runs

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("submitter", "owner", "operator", "verifier")
# The principal that plays each role; owner:org-a is a required owner of the default run.
PRINCIPAL = {
    "submitter": "submitter",
    "owner": "owner:org-a",
    "operator": "operator",
    "verifier": "verifier",
}

Body = Callable[[Runs, str], Any]


def _submit_body(runs: Runs, _: str) -> Any:
    return runs.request().model_dump(mode="json", exclude_none=True)


def _approval_body(runs: Runs, run_id: str) -> Any:
    return {"envelope": runs.approval(run_id, "org-a")}


def _claim_body(_: Runs, __: str) -> Any:
    return {"claim_id": secrets.token_hex(32), "session": "not-a-session"}


def _workload_body(_: Runs, __: str) -> Any:
    return {"isolation": "pod", "host_data": {"driver": "11" * 32, "executor": "22" * 32}}


def _cancel_body(_: Runs, __: str) -> Any:
    return {"reason": "auth test"}


def _key_body(_: Runs, __: str) -> Any:
    policy = {"measurements": ["00" * 48]}
    return {"key_id": f"org-a/auth-{secrets.token_hex(4)}", "release_policy": policy}


def _challenge_body(_: Runs, run_id: str) -> Any:
    return {"run_id": run_id}


def _attest_body(_: Runs, run_id: str) -> Any:
    return {
        "run_id": run_id,
        "nonce": secrets.token_hex(32),
        "purpose": "key-agent",
        "pod_id": secrets.token_hex(16),
        "role": "driver",
        "evidence": {},
        "public_jwk": {},
    }


def _latest_body(_: Runs, __: str) -> Any:
    return {"uri": "file:///nowhere", "session": "not-a-session", "dataset": "customers_a"}


def _publish_body(_: Runs, __: str) -> Any:
    return {
        "uri": f"file:///auth-{secrets.token_hex(4)}",
        "key_id": "org-a/auth",
        "version": 1,
        "manifest_digest": "sha256:" + "0" * 64,
        "session": "not-a-session",
        "dataset": "overlap",
    }


def _owner_access_body(_: Runs, __: str) -> Any:
    return {"public_jwk": {}}


def _heartbeat_body(_: Runs, __: str) -> Any:
    return {"session": "not-a-session", "jws": "x.y.z"}


def _release_body(_: Runs, __: str) -> Any:
    return {"session": "not-a-session", "dataset": "customers_a"}


def _refusal_body(_: Runs, __: str) -> Any:
    return {"role": "driver", "code": "digest.module", "exit_code": 16, "step": 7}


def _secret_body(_: Runs, __: str) -> Any:
    return {"session": "not-a-session"}


def _enrol_body(_: Runs, __: str) -> Any:
    """An enrolment signed by the new key alone: refused for that, not for the caller."""
    new = SigningKey.generate("ed25519")
    statement = OwnerKeyEnrolment(org="org-a", public_key_pem=new.public_pem, at=utcnow())
    return {
        "envelope": envelope.to_json(
            envelope.sign(canonical(statement), envelope.ENROLMENT_TYPE, [new])
        )
    }


def _policy_body(_: Runs, __: str) -> Any:
    return {"release_policy": {"measurements": ["00" * 48]}}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # OpenAPI template: {run_id} is filled with a real run
    allowed: frozenset[str]
    body: Body | None = None
    expected: int | dict[str, int] = 200  # what an allowed caller gets with this body

    def expect(self, role: str) -> int:
        return self.expected if isinstance(self.expected, int) else self.expected[role]

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, emu: EmulatorProcess, run_id: str) -> str:
        return emu.url + self.path.replace("{run_id}", run_id).replace("{key_id}", "org-a/none")


ENDPOINTS = (
    Endpoint("GET", "/v1/health", frozenset(ROLES)),
    Endpoint("POST", "/v1/runs", frozenset({"submitter"}), _submit_body, 201),
    Endpoint("GET", "/v1/runs", frozenset({"submitter", "owner", "operator"})),
    Endpoint("GET", "/v1/runs/{run_id}", frozenset(ROLES)),
    Endpoint("GET", "/v1/runs/{run_id}/spec", frozenset(ROLES)),
    Endpoint("POST", "/v1/runs/{run_id}/approvals", frozenset({"owner"}), _approval_body),
    # A claim with a made-up session is refused for what it is, not for the caller: the
    # verifier token alone claims nothing.
    Endpoint("POST", "/v1/runs/{run_id}/claim", frozenset({"verifier"}), _claim_body, 403),
    Endpoint(
        "POST",
        "/v1/runs/{run_id}/workload",
        frozenset({"submitter", "operator"}),
        _workload_body,
    ),
    Endpoint(
        "POST", "/v1/runs/{run_id}/cancel", frozenset({"submitter", "operator"}), _cancel_body
    ),
    Endpoint("GET", "/v1/audit", frozenset({"operator"})),
    Endpoint("GET", "/v1/audit/mine", frozenset({"owner"})),
    Endpoint("POST", "/v1/trust-root/owner-keys", frozenset({"owner"}), _enrol_body, 403),
    Endpoint("GET", "/v1/kms/keys", frozenset({"owner", "operator"})),
    # The key named (org-a/none) does not exist: refused for that, not for the caller.
    Endpoint("PUT", "/v1/kms/keys/{key_id}/policy", frozenset({"owner"}), _policy_body, 404),
    # A made-up heartbeat session is refused for what it is, not for the caller.
    Endpoint("POST", "/v1/runs/{run_id}/heartbeats", frozenset({"verifier"}), _heartbeat_body, 403),
    Endpoint("POST", "/v1/kms/keys", frozenset({"owner"}), _key_body, 201),
    Endpoint("GET", "/v1/kms/keys/{key_id}", frozenset({"owner", "operator"}), expected=404),
    Endpoint("POST", "/v1/kms/challenge", frozenset({"verifier"}), _challenge_body),
    # Refused for its made-up nonce and session, not for the caller.
    Endpoint("POST", "/v1/kms/attest", frozenset({"verifier"}), _attest_body, 409),
    Endpoint("POST", "/v1/kms/release", frozenset({"verifier"}), _release_body, 403),
    Endpoint("POST", "/v1/kms/spark-secret", frozenset({"verifier"}), _secret_body, 403),
    Endpoint("POST", "/v1/runs/{run_id}/refusals", frozenset({"verifier"}), _refusal_body),
    Endpoint(
        "POST", "/v1/kms/keys/{key_id}/owner-access", frozenset({"owner"}), _owner_access_body, 404
    ),
    # Owners and operators name a URI nobody wrote; a pod's made-up session is refused.
    Endpoint(
        "POST",
        "/v1/datasets/latest",
        frozenset({"owner", "operator", "verifier"}),
        _latest_body,
        {"owner": 404, "operator": 404, "verifier": 403},
    ),
    Endpoint(
        "POST",
        "/v1/datasets/publish",
        frozenset({"owner", "verifier"}),
        _publish_body,
        {"owner": 200, "verifier": 403},
    ),
)

FORBIDDEN = [
    pytest.param(ep, role, id=f"{ep.id} as {role}")
    for ep in ENDPOINTS
    for role in ROLES
    if role not in ep.allowed
]
ALLOWED = [
    pytest.param(ep, role, id=f"{ep.id} as {role}")
    for ep in ENDPOINTS
    for role in ROLES
    if role in ep.allowed
]
ALL = [pytest.param(ep, id=ep.id) for ep in ENDPOINTS]


def call(
    emu: EmulatorProcess,
    ep: Endpoint,
    run_id: str,
    headers: dict[str, str],
    body: Any = None,
) -> requests.Response:
    return requests.request(ep.method, ep.url(emu, run_id), headers=headers, json=body, timeout=10)


def bearer(emu: EmulatorProcess, principal: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.token(principal)}"}


def error_code(resp: requests.Response) -> str:
    return str(resp.json()["error"]["code"])


@pytest.fixture
def run_id(runs: Runs) -> str:
    return runs.submit()


# --- the table matches the API -------------------------------------------------------


def test_table_covers_every_documented_endpoint() -> None:
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(ep.method, ep.path) for ep in ENDPOINTS}


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/v1"])
def test_no_route_answers_without_a_token(emulator: EmulatorProcess, path: str) -> None:
    """The schema is published as docs/openapi.json, not served unauthenticated."""
    assert requests.get(f"{emulator.url}{path}", timeout=10).status_code in (401, 404)


# --- 401: no token, bad token ---------------------------------------------------------


@pytest.mark.parametrize("ep", ALL)
def test_no_token_is_401_auth_missing(
    emulator: EmulatorProcess, runs: Runs, run_id: str, ep: Endpoint
) -> None:
    body = ep.body(runs, run_id) if ep.body else None
    resp = call(emulator, ep, run_id, {}, body)
    assert resp.status_code == 401, resp.text
    assert error_code(resp) == "auth.missing"


@pytest.mark.parametrize("ep", ALL)
def test_wrong_token_is_401_auth_invalid(
    emulator: EmulatorProcess, runs: Runs, run_id: str, ep: Endpoint
) -> None:
    body = ep.body(runs, run_id) if ep.body else None
    wrong = secrets.token_urlsafe(32)
    resp = call(emulator, ep, run_id, {"Authorization": f"Bearer {wrong}"}, body)
    assert resp.status_code == 401, resp.text
    assert error_code(resp) == "auth.invalid"
    assert wrong not in resp.text


@pytest.mark.parametrize("ep", ALL)
def test_non_bearer_scheme_is_401_auth_missing(
    emulator: EmulatorProcess, run_id: str, ep: Endpoint
) -> None:
    token = emulator.token("operator")
    resp = call(emulator, ep, run_id, {"Authorization": f"Basic {token}"})
    assert resp.status_code == 401, resp.text
    assert error_code(resp) == "auth.missing"


# --- 403: roles ------------------------------------------------------------------------


@pytest.mark.parametrize(("ep", "role"), FORBIDDEN)
def test_role_not_allowed_is_403_auth_forbidden(
    emulator: EmulatorProcess, runs: Runs, run_id: str, ep: Endpoint, role: str
) -> None:
    body = ep.body(runs, run_id) if ep.body else None
    resp = call(emulator, ep, run_id, bearer(emulator, PRINCIPAL[role]), body)
    assert resp.status_code == 403, resp.text
    assert error_code(resp) == "auth.forbidden"
    # A refused call changes nothing.
    with emulator.client("operator") as c:
        assert c.status(run_id).state == "pending_approval"
        assert c.status(run_id).approved_by == {"org-a": 0, "org-b": 0}


@pytest.mark.parametrize(("ep", "role"), ALLOWED)
def test_role_allowed_is_not_refused(
    emulator: EmulatorProcess, runs: Runs, run_id: str, ep: Endpoint, role: str
) -> None:
    """The positive control: the 403s above are about the role, not the request."""
    body = ep.body(runs, run_id) if ep.body else None
    resp = call(emulator, ep, run_id, bearer(emulator, PRINCIPAL[role]), body)
    assert not resp.json().get("error", {}).get("code", "").startswith("auth."), resp.text
    assert resp.status_code == ep.expect(role), resp.text


def test_refusals_are_audited(emulator: EmulatorProcess, run_id: str) -> None:
    """Authenticated refusals are audited one by one, naming the route's template; the
    unauthenticated ones are only counted (anyone can send them)."""
    with emulator.client("operator") as c:
        before = len(c.audit().entries)
    for _ in range(50):
        requests.get(f"{emulator.url}/v1/runs/{run_id}/../../audit?x=" + "A" * 500, timeout=10)
        requests.get(f"{emulator.url}/v1/runs/{run_id}", timeout=10)
    requests.get(f"{emulator.url}/v1/audit", headers=bearer(emulator, "verifier"), timeout=10)
    with emulator.client("operator") as c:
        entries = c.audit().entries[before:]
    denied = [(e.event, e.actor, e.details) for e in entries if e.event.startswith("auth.")]
    assert denied[-1] == (
        "auth.denied",
        "verifier",
        {"path": "/v1/audit", "reason": "role verifier not allowed"},
    )
    assert len(entries) <= 3  # 100 unauthenticated requests: at most one summary entry
    assert "A" * 100 not in json.dumps([e.details for e in entries])


def test_unauthenticated_refusals_are_summarised(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("JOBRUNTIME_AUDIT_SUMMARY_SECONDS", "0.5")
    with EmulatorProcess(tmp_path / "emu") as emu:
        for _ in range(30):
            requests.get(f"{emu.url}/v1/health", timeout=10)
            requests.get(f"{emu.url}/v1/health", headers={"Authorization": "Bearer x"}, timeout=10)
        deadline = time.monotonic() + 20
        summary: list[dict[str, Any]] = []
        while not summary and time.monotonic() < deadline:
            with emu.client("operator") as c:
                summary = [
                    e.details for e in c.audit().entries if e.event == "auth.denied_unauthenticated"
                ]
            time.sleep(0.2)
    counts: dict[str, int] = {}
    for s in summary:
        for reason, n in s["counts"].items():
            counts[reason] = counts.get(reason, 0) + n
    assert counts == {"missing token": 30, "unknown token": 30}


# --- 403: whose run it is ---------------------------------------------------------------


@pytest.fixture(scope="module")
def emu3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """An emulator with a third org and a second submitter, set up before it starts."""
    state = tmp_path_factory.mktemp("emu3")
    init_state(state, ["org-a", "org-b", "org-c"])
    tokens = json.loads((state / TOKENS).read_text())
    tokens["principals"].append(
        {
            "name": "submitter-2",
            "role": "submitter",
            "org": None,
            "token": secrets.token_urlsafe(32),
        }
    )
    (state / TOKENS).write_text(json.dumps(tokens))
    emu = EmulatorProcess(state, owners=("org-a", "org-b", "org-c")).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def runs3(emu3: EmulatorProcess, tmp_path: Path) -> Runs:
    return Runs(emu3, tmp_path)


@pytest.mark.parametrize("suffix", ["", "/spec"])
def test_owner_of_an_org_not_in_the_run_is_403(
    emu3: EmulatorProcess, runs3: Runs, suffix: str
) -> None:
    run_id = runs3.submit()  # needs org-a and org-b
    url = f"{emu3.url}/v1/runs/{run_id}{suffix}"
    resp = requests.get(url, headers=bearer(emu3, "owner:org-c"), timeout=10)
    assert resp.status_code == 403, resp.text
    assert error_code(resp) == "auth.forbidden"
    ok = requests.get(url, headers=bearer(emu3, "owner:org-b"), timeout=10)
    assert ok.status_code == 200, ok.text


def test_owner_of_an_org_not_in_the_run_cannot_approve(emu3: EmulatorProcess, runs3: Runs) -> None:
    run_id = runs3.submit()
    approval = runs3.approval(run_id, "org-c")  # a genuine org-c signature
    resp = requests.post(
        f"{emu3.url}/v1/runs/{run_id}/approvals",
        headers=bearer(emu3, "owner:org-c"),
        json={"envelope": approval},
        timeout=10,
    )
    assert resp.status_code == 403, resp.text
    assert error_code(resp) == "auth.forbidden"


def test_single_org_run_hides_from_the_other_owner(emulator: EmulatorProcess, runs: Runs) -> None:
    """Same rule on the shared emulator: a run that only involves org-a."""
    dataset = {"name": "only_a", "uri": "file:///data/a", "key_id": "org-a/k", "owner": "org-a"}
    run_id = runs.submit(inputs=[dataset], outputs=[])
    for suffix in ("", "/spec"):
        resp = requests.get(
            f"{emulator.url}/v1/runs/{run_id}{suffix}",
            headers=bearer(emulator, "owner:org-b"),
            timeout=10,
        )
        assert resp.status_code == 403, resp.text
        assert error_code(resp) == "auth.forbidden"


def test_owner_approving_for_another_org_is_403(emulator: EmulatorProcess, runs: Runs) -> None:
    run_id = runs.submit()
    # A valid org-b approval, signed with org-b's key, posted by org-a's owner.
    approval = runs.approval(run_id, "org-b")
    resp = requests.post(
        f"{emulator.url}/v1/runs/{run_id}/approvals",
        headers=bearer(emulator, "owner:org-a"),
        json={"envelope": approval},
        timeout=10,
    )
    assert resp.status_code == 403, resp.text
    assert error_code(resp) == "auth.forbidden"
    with emulator.client("operator") as c:
        status = c.status(run_id)
    assert status.approved_by == {"org-a": 0, "org-b": 0}
    assert status.state == "pending_approval"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/spec", None),
        ("POST", "/cancel", {"reason": "not mine"}),
    ],
)
def test_submitter_sees_only_its_own_runs(
    emu3: EmulatorProcess, runs3: Runs, method: str, suffix: str, body: Any
) -> None:
    run_id = runs3.submit()  # by "submitter"
    url = f"{emu3.url}/v1/runs/{run_id}{suffix}"
    resp = requests.request(method, url, headers=bearer(emu3, "submitter-2"), json=body, timeout=10)
    assert resp.status_code == 403, resp.text
    assert error_code(resp) == "auth.forbidden"
    with emu3.client("operator") as c:
        assert c.status(run_id).state == "pending_approval"
    own = requests.request(method, url, headers=bearer(emu3, "submitter"), json=body, timeout=10)
    assert own.status_code == 200, own.text
