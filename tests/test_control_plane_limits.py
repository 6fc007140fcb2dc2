"""Limits and state on disk (part of the control-plane issue): refused with codes, never a 500."""

from __future__ import annotations

import json
import socket
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from jobruntime.controlplane.api import Heartbeat, SignedHeartbeat
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.keyrelease import jwe
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import utcnow
from tests.conftest import Runs
from tests.sessions import TestPod, api, error_code


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_emulators_state_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path / "emu") as emu:
        runs = Runs(emu, tmp_path)
        runs.approved()  # writes through the WAL
        state = emu.state
        assert mode(state) == 0o700
        for name in ("emulator.db", "emulator.db-wal", "emulator.db-shm", "tokens.json"):
            if (state / name).exists():
                assert mode(state / name) == 0o600, name


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1])
def test_integers_beyond_ijson_are_refused_not_a_500(runs: Runs, value: int) -> None:
    body = runs.request().model_dump(mode="json", exclude_none=True)
    body["parameters"] = {"k": value}
    resp = api(runs.emu, "submitter", "POST", "/runs", body)
    assert (resp.status_code, error_code(resp)) == (400, "request.invalid")
    assert "2^53" in resp.json()["error"]["message"]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_not_a_500(runs: Runs, text: str) -> None:
    body = runs.request().model_dump(mode="json", exclude_none=True)
    raw = json.dumps(body).replace('"k": 10', f'"k": {text}')
    resp = requests.post(
        f"{runs.emu.url}/v1/runs",
        data=raw,
        headers={
            "Authorization": f"Bearer {runs.emu.token('submitter')}",
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert resp.status_code in (400, 422), resp.text
    assert "error" in resp.json()


@pytest.mark.parametrize("offset", [timedelta(hours=1), -timedelta(hours=3)])
def test_a_heartbeat_from_the_future_or_too_old_is_refused(runs: Runs, offset: timedelta) -> None:
    run_id = runs.approved()
    pod = TestPod(runs.emu, run_id)
    assert pod.claim().status_code == 200
    token = pod.session("heartbeat")
    beat = Heartbeat(run_id=run_id, seq=0, at=utcnow() + offset, state="running")
    signed = SignedHeartbeat(session=token, jws=jwe.sign(pod.keys["heartbeat"], canonical(beat)))
    resp = api(runs.emu, "verifier", "POST", f"/runs/{run_id}/heartbeats", signed.model_dump())
    assert (resp.status_code, error_code(resp)) == (409, "heartbeat.clock")
    # A sequence number near 2^53 (to lock the real sidecar out) is not a heartbeat.
    huge = beat.model_dump(mode="json") | {"seq": 2**53 - 1, "at": utcnow().isoformat()}
    jws = jwe.sign(pod.keys["heartbeat"], canonical(huge))
    body = {"session": token, "jws": jws}
    resp = api(runs.emu, "verifier", "POST", f"/runs/{run_id}/heartbeats", body)
    assert resp.status_code == 403
    with runs.emu.client("operator") as c:
        assert c.status(run_id).last_heartbeat_at is None


def test_duplicate_keys_are_refused_before_any_route_reads_them(runs: Runs) -> None:
    """{"k": 1, "k": 2}: one reader keeps the first, another the last; refuse both."""
    raw = b'{"run_id": "x", "run_id": "y"}'
    resp = requests.post(
        f"{runs.emu.url}/v1/kms/challenge",
        data=raw,
        headers={"Authorization": f"Bearer {runs.emu.token('verifier')}"},
        timeout=10,
    )
    assert (resp.status_code, error_code(resp)) == (400, "request.invalid")
    assert "repeats a key" in resp.json()["error"]["message"]


def test_a_body_is_not_read_before_the_token_is_known(runs: Runs) -> None:
    """A caller without a token announcing 600 MiB is answered at once, before any byte."""
    host, port = runs.emu.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 629145600\r\n\r\n{"
        )
        answer = b""
        while b"}}" not in answer:  # headers and body may come in separate segments
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.decode().startswith("HTTP/1.1 401"), answer
    assert b'"auth.missing"' in answer


@pytest.mark.parametrize(
    ("path", "size"),
    [("/kms/challenge", 17 * 1024), ("/kms/attest", 65 * 1024), ("/runs", 2 * 1024 * 1024)],
)
def test_each_route_has_its_body_limit(runs: Runs, path: str, size: int) -> None:
    resp = api(runs.emu, "verifier", "POST", path, {"pad": "x" * size})
    assert (resp.status_code, error_code(resp)) == (413, "request.too_large")


def test_a_validity_window_is_bounded(runs: Runs) -> None:
    body = runs.request().model_dump(mode="json", exclude_none=True)
    now = utcnow()
    body["validity"] = {
        "not_before": now.isoformat(),
        "expires": now.replace(year=9999).isoformat(),
    }
    resp = api(runs.emu, "submitter", "POST", "/runs", body)
    assert (resp.status_code, error_code(resp)) == (400, "request.invalid")
    assert "at most 31 days" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [b'{"a": 1, "a": 2}', b'{"a": NaN}', b'{"a": 9007199254740993}', b'{"a": -Infinity}'],
)
def test_signed_json_that_canonical_form_cannot_carry_is_refused(raw: bytes) -> None:
    from jobruntime.errors import SpecSchemaError
    from jobruntime.spec.codec import load_json

    with pytest.raises(SpecSchemaError):
        load_json(raw, "spec")


def test_json_in_utf16_cannot_slip_a_deep_document_past_the_depth_check() -> None:
    """Found in review: ``json.loads`` on bytes also takes UTF-16, whose bytes the depth
    check cannot read; a deep UTF-16 document reached the parser's recursion limit."""
    from jobruntime.errors import SpecSchemaError, SpecTooDeepError
    from jobruntime.spec.codec import load_json

    deep = '["\\"", ' + "[" * 200_000 + "]" * 200_000 + ', "x"]'
    with pytest.raises(SpecSchemaError, match=r"not (UTF-8 )?JSON"):
        load_json(deep.encode("utf-16-le"), "bundle", max_bytes=10**7)
    with pytest.raises(SpecSchemaError, match="byte-order mark"):
        load_json(b"\xef\xbb\xbf{}", "bundle")
    with pytest.raises(SpecTooDeepError):
        load_json(deep.encode(), "bundle", max_bytes=10**7)


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        ({"report": "é" * 8}, "not valid base64"),  # found in review: once a 500
        ({"report": "!!!!"}, "not valid base64"),
        ({"report": "AAAA"}, "not 1184"),
        ({"kind": "quantum"}, "unknown evidence kind"),
        ({"certificates": "-----BEGIN CERTIFICATE-----\né\n-----END CERTIFICATE-----"}, ""),
    ],
)
def test_malformed_evidence_is_a_typed_refusal(
    runs: Runs, evidence: dict[str, Any], reason: str
) -> None:
    import base64
    import secrets

    from jobruntime.keyrelease.jwe import EphemeralKey

    run_id = runs.approved()
    nonce = api(runs.emu, "verifier", "POST", "/kms/challenge", {"run_id": run_id}).json()
    body = {
        "run_id": run_id,
        "nonce": nonce["nonce"],
        "purpose": "verifier",
        "pod_id": secrets.token_hex(16),
        "role": "driver",
        "evidence": {
            "kind": "emulated",
            "report": base64.b64encode(bytes(1184)).decode(),
            "certificates": "",
            "runtime_data": None,
        }
        | evidence,
        "public_jwk": EphemeralKey().public_jwk,
    }
    resp = api(runs.emu, "verifier", "POST", "/kms/attest", body)
    assert resp.status_code == 403, resp.text
    assert error_code(resp).startswith("attestation."), resp.text
    assert reason in resp.json()["error"]["message"]
