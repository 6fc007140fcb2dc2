"""Request bodies at the control plane, and heartbeats over HTTP and from the Service Bus.

The emulator's FastAPI app runs in this process (no server, no Spark) on a state made
for this module. A run is submitted, approved, attested and claimed the way a pod
does it, so mutated heartbeats, approvals and evidence reach the checks behind the
session, not just the route's schema. Property: never a 500; every refusal is the
API's error body with a stable code.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import ValidationError

from jobruntime.attestation.providers.emulated import (
    EMULATED_MEASUREMENT,
    EmulatedProvider,
    load_tee,
)
from jobruntime.controlplane.api import SignedHeartbeat
from jobruntime.controlplane.service import heartbeats
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.emulator.app import create_app
from jobruntime.emulator.state import TEE_DIR, init_state, load_tokens, owner_key_path
from jobruntime.keyrelease import jwe
from jobruntime.keyrelease.binding import Binding
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from tests.fuzz.support import byte_mutation, dump, json_inputs, typed
from tests.fuzz.test_spec import request_doc

with warnings.catch_warnings():  # starlette's note about its httpx dependency: not ours
    warnings.simplefilter("ignore", UserWarning)  # StarletteDeprecationWarning
    from fastapi.testclient import TestClient

CODE = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
NONCE_TTL = 2.0


def node_request() -> dict[str, Any]:
    """A request the emulator accepts now: its own window, node isolation (no pod launcher)."""
    doc = request_doc() | {"workload": {"isolation": "node", "host_data": {}}}
    del doc["validity"]
    return doc


def key_request(key_id: str) -> dict[str, Any]:
    """A dataset key the emulated chip may have released to it, in either isolation."""
    policy = {
        "isolation": ["pod", "node"],
        "evidence_kinds": ["sev-snp", "azure-vtpm", "emulated"],
        "measurements": [EMULATED_MEASUREMENT.hex()],
    }
    return {"key_id": key_id, "release_policy": policy}


class Plane:
    """The emulator in process: the app, its control plane, tokens and an approved run."""

    def __init__(self, state: Path) -> None:
        init_state(state, ["org-a", "org-b"])
        app = create_app(state)
        self.cp: ControlPlane = app.state.control_plane
        self.http = TestClient(app, raise_server_exceptions=True)
        self.tokens = {p.name: p.token for p in load_tokens(state).principals}
        self.tee = load_tee(state / TEE_DIR)
        self.owner = SigningKey.load(owner_key_path(state, "org-a"))
        self.pod_id = secrets.token_hex(16)
        self.run_id = self.submit()
        self.digest = self.call("operator", "GET", f"/runs/{self.run_id}").json()["spec_digest"]
        approval = self.call(
            "owner:org-a", "POST", f"/runs/{self.run_id}/approvals", dump(self.approval())
        )
        assert approval.status_code == 200, approval.text
        self.keys: dict[str, jwe.EphemeralKey] = {}
        self.sessions = {"verifier": self.attest("verifier")}
        claim = {"claim_id": secrets.token_hex(32), "session": self.sessions["verifier"]}
        resp = self.call("verifier", "POST", f"/runs/{self.run_id}/claim", dump(claim))
        assert resp.status_code == 200, resp.text
        self.sessions["heartbeat"] = self.attest("heartbeat")
        self.sessions["key-agent"] = self.attest("key-agent")
        for key_id in ("org-a/sales", "org-a/summary"):
            resp = self.call("owner:org-a", "POST", "/kms/keys", dump(key_request(key_id)))
            assert resp.status_code == 201, resp.text
        self.seq = count(1)
        self.spare_run = self.submit()  # for cancels: the claimed run keeps running

    def call(self, who: str, method: str, path: str, body: bytes | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, f"/v1{path}", content=body, headers=headers)

    def submit(self) -> str:
        resp = self.call("submitter", "POST", "/runs", dump(node_request()))
        assert resp.status_code == 201, resp.text
        run_id: str = resp.json()["run_id"]
        return run_id

    def approval(self) -> dict[str, Any]:
        payload = canonical(
            {
                "schema_version": 1,
                "type": "approval",
                "run_id": self.run_id,
                "spec_digest": self.digest,
                "owner": "org-a",
                "approved_at": utcnow().isoformat(),
            }
        )
        signed = envelope.sign(payload, envelope.APPROVAL_TYPE, [self.owner])
        return {"envelope": envelope.to_json(signed)}

    def attest_request(self, purpose: str) -> dict[str, Any]:
        """A fresh nonce and evidence binding it, as a pod sends them."""
        resp = self.call("verifier", "POST", "/kms/challenge", dump({"run_id": self.run_id}))
        if resp.status_code == 429:  # mutated requests left 256 nonces unused: wait them out
            time.sleep(NONCE_TTL)
            resp = self.call("verifier", "POST", "/kms/challenge", dump({"run_id": self.run_id}))
        assert resp.status_code == 200, resp.text
        key = jwe.EphemeralKey()
        self.keys[purpose] = key
        binding = Binding(
            nonce=resp.json()["nonce"],
            run_id=self.run_id,
            spec_digest=self.digest,
            key_thumbprint=key.thumbprint,
            purpose=purpose,
            pod_id=self.pod_id,
            role="driver",
        )
        provider = EmulatedProvider(self.tee, measurement=EMULATED_MEASUREMENT)
        return {
            "run_id": self.run_id,
            "nonce": binding.nonce,
            "purpose": purpose,
            "pod_id": self.pod_id,
            "role": "driver",
            "evidence": provider.collect(binding.report_data()).to_json(),
            "public_jwk": key.public_jwk,
        }

    def attest(self, purpose: str) -> str:
        resp = self.call("verifier", "POST", "/kms/attest", dump(self.attest_request(purpose)))
        assert resp.status_code == 200, resp.text
        session: str = resp.json()["session"]
        return session

    def heartbeat(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": next(self.seq),
            "at": utcnow().isoformat(),
            "state": "running",
            "progress": {"jobs_done": 1, "jobs_total": 2},
            "interval": 10.0,
        }

    def signed_heartbeat(self, payload: bytes) -> dict[str, Any]:
        return {
            "session": self.sessions["heartbeat"],
            "jws": jwe.sign(self.keys["heartbeat"], payload),
        }


@pytest.fixture(scope="module")
def plane() -> Iterator[Plane]:
    state = Path(tempfile.mkdtemp(prefix="fuzz-control-plane-"))
    try:
        with pytest.MonkeyPatch.context() as env:
            # Mutated attest requests leave their nonces unused; short-lived ones go soon.
            env.setenv("JOBRUNTIME_KMS_NONCE_TTL", str(NONCE_TTL))
            made = Plane(state / "state")
        yield made
    finally:
        shutil.rmtree(state, ignore_errors=True)


def check_answer(resp: Any) -> None:
    """Not a 500; a refusal is ``{"error": {"code", "message"}}`` with a stable code."""
    assert resp.status_code < 500, resp.text
    code = ""
    if resp.status_code >= 400:
        error = resp.json()["error"]
        assert set(error) == {"code", "message"}
        assert CODE.fullmatch(error["code"]), error
        code = error["code"]
    event(f"{resp.status_code} {code}")


def bodies(seed: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(json_inputs(seed, keys=list(seed)), st.just(dump(seed)).flatmap(byte_mutation))


# --- routes -------------------------------------------------------------------------------


@given(data=st.data())
def test_submit(plane: Plane, data: st.DataObject) -> None:
    """``POST /runs``: a job-run request, the largest body the API takes."""
    check_answer(plane.call("submitter", "POST", "/runs", data.draw(bodies(node_request()))))


@given(data=st.data())
def test_approve(plane: Plane, data: st.DataObject) -> None:
    """``POST /runs/{id}/approvals`` with the envelope or its payload mutated."""
    seed = plane.approval()
    body = data.draw(bodies(seed))
    check_answer(plane.call("owner:org-a", "POST", f"/runs/{plane.run_id}/approvals", body))


@given(data=st.data())
def test_attest(plane: Plane, data: st.DataObject) -> None:
    """``POST /kms/attest``: a fresh nonce each time, evidence and key mutated."""
    seed = plane.attest_request("key-agent")
    check_answer(plane.call("verifier", "POST", "/kms/attest", data.draw(bodies(seed))))


@given(data=st.data())
def test_other_routes(plane: Plane, data: st.DataObject) -> None:
    """The remaining bodies a caller chooses (refusals, releases, keys, datasets, claims)."""
    run, session = plane.run_id, plane.sessions["key-agent"]
    routes: list[tuple[str, str, dict[str, Any]]] = [
        ("verifier", f"/runs/{run}/claim", {"claim_id": "5" * 64, "session": "x"}),
        (
            "verifier",
            f"/runs/{run}/refusals",
            {"role": "driver", "code": "spec.schema", "exit_code": 10, "step": 3},
        ),
        ("verifier", "/kms/challenge", {"run_id": run}),
        ("submitter", f"/runs/{plane.spare_run}/cancel", {"reason": "fuzz"}),
        ("submitter", f"/runs/{plane.spare_run}/workload", {"isolation": "node"}),
        ("verifier", "/kms/release", {"session": session, "dataset": "sales"}),
        ("verifier", "/kms/spark-secret", {"session": session}),
        ("verifier", "/datasets/latest", {"session": session, "dataset": "sales"}),
        (
            "verifier",
            "/datasets/publish",
            {
                "session": session,
                "dataset": "summary",
                "version": 1,
                "manifest_digest": "sha256:" + "0" * 64,
                "signature": "a.b.c",
            },
        ),
        ("owner:org-a", "/kms/keys", key_request("org-a/fuzz")),
        ("owner:org-a", "/trust-root/owner-keys", {"envelope": {}}),
        ("owner:org-a", "/kms/keys/org-a/sales/owner-access", {"public_jwk": {}}),
    ]
    who, path, seed = data.draw(st.sampled_from(routes))
    check_answer(plane.call(who, "POST", path, data.draw(bodies(seed))))


# --- heartbeats -------------------------------------------------------------------------


@given(data=st.data())
def test_heartbeat_route(plane: Plane, data: st.DataObject) -> None:
    """A heartbeat signed by the session's key with its payload mutated, or the body."""
    payload = data.draw(json_inputs(plane.heartbeat(), keys=["seq", "run_id"]))
    body = data.draw(bodies(plane.signed_heartbeat(payload)))
    check_answer(plane.call("verifier", "POST", f"/runs/{plane.run_id}/heartbeats", body))


def _from_the_bus(cp: ControlPlane, body: bytes) -> Any:
    return heartbeats.accept(cp, SignedHeartbeat.model_validate_json(body), "servicebus")


@given(data=st.data())
def test_heartbeat_from_the_service_bus(plane: Plane, data: st.DataObject) -> None:
    """The Service Bus consumer's path: message bytes, then the same checks as HTTP;
    it drops what raises ``ServiceError`` or ``ValueError`` (pydantic's), nothing else."""
    payload = data.draw(json_inputs(plane.heartbeat(), keys=["seq", "state"]))
    body = data.draw(bodies(plane.signed_heartbeat(payload)))
    typed(
        _from_the_bus,
        plane.cp,
        body,
        also=(ServiceError, ValidationError),
        code_of=lambda e: e.code if isinstance(e, ServiceError) else "request.invalid",
    )


def test_the_seed_heartbeat_is_accepted(plane: Plane) -> None:
    body = dump(plane.signed_heartbeat(canonical(plane.heartbeat())))
    resp = plane.call("verifier", "POST", f"/runs/{plane.run_id}/heartbeats", body)
    assert resp.status_code == 200, resp.text
    assert json.loads(resp.text)["accepted"] is True


@pytest.mark.parametrize("value", [2**53, -(2**53)])
def test_regression_an_integer_of_exactly_2_53_is_refused_not_a_500(
    plane: Plane, value: int
) -> None:
    """Found by fuzzing: the gate and the model allowed +-2^53, which RFC 8785 cannot
    carry, so signing the spec raised IntegerDomainError (a 500) at ``POST /runs``."""
    body = dump(node_request() | {"parameters": {"k": value}})
    resp = plane.call("submitter", "POST", "/runs", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "request.invalid"


def test_regression_an_approval_policy_without_a_datasets_owner_is_refused(plane: Plane) -> None:
    """Found by fuzzing: a request whose own approval policy leaves out a dataset's owner
    passed the request model, then building the spec raised ValidationError (a 500)."""
    doc = node_request()
    doc["outputs"][0]["owner"] = "org-b"  # org-a alone approves
    resp = plane.call("submitter", "POST", "/runs", dump(doc))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "request.invalid"
