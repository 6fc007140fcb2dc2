"""The agent over real Unix sockets: permissions, protocol, grants, caching, refusals, shutdown."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.errors import AttestationError
from jobruntime.keyagent.cache import KeyCache
from jobruntime.keyagent.client import AgentKeyOps, KeyAgentClient
from jobruntime.keyagent.errors import (
    BusyError,
    KeyAgentError,
    KeyAgentUnavailableError,
    KeyMismatchError,
    KeySourceError,
    NotInSpecError,
    NotWritableError,
    PeerRefusedError,
    SocketPathError,
    UnwrapFailedError,
)
from jobruntime.keyagent.protocol import MAX_REQUEST
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource
from tests.keyagent.conftest import AgentFactory, CountingSource
from tests.tamper import spellings as forms

KEY = bytes(range(32))
KID = "org-a/sales"
KEK = os.urandom(16)
DIGEST = hashlib.sha256(b"a manifest body").digest()


def raw(path: Path, payload: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """Send bytes, read until the agent hangs up or goes quiet: (answers, leftover)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        s.connect(str(path))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.split(b"\n")
    return [json.loads(line) for line in lines[:-1]], lines[-1]


def ask(path: Path, **request: Any) -> dict[str, Any]:
    (answer,), _ = raw(path, json.dumps(request).encode() + b"\n")
    return answer


def test_socket_is_0600_in_a_new_0700_dir(agent: AgentFactory, shm_dir: Path) -> None:
    server = agent(CountingSource({"a": KEY}), name="sub/dir/agent.sock")
    assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(server.socket_path).st_mode)
    assert stat.S_IMODE(os.stat(shm_dir / "sub" / "dir").st_mode) == 0o700


def test_wrap_unwrap_and_macs_round_trip_in_the_documented_format(agent: AgentFactory) -> None:
    server = agent(CountingSource({"sales": KEY, "out": b"o" * 32}, key_ids={"sales": KID}))
    client = KeyAgentClient(server.socket_path)
    assert client.health() == {"ok": True, "datasets": ["out", "sales"], "cached": []}
    wrapped = client.wrap("sales", KID, KEK)
    assert client.unwrap("sales", KID, wrapped) == KEK
    # Independently: base64(nonce[12] || AES-256-GCM(master key, KEK, aad=key id)).
    blob = base64.b64decode(wrapped)
    assert AESGCM(KEY).decrypt(blob[:12], blob[12:], KID.encode()) == KEK
    local = LocalMasterKey(KID, KEY)
    assert client.unwrap("sales", KID, local.wrap(KEK)) == KEK
    assert client.key_check("sales", KID) == local.key_check()
    mac = client.mac("sales", KID, DIGEST)
    assert mac == local.mac(DIGEST)
    assert client.check_mac("sales", KID, DIGEST, mac) is True
    assert client.check_mac("sales", KID, hashlib.sha256(b"other").digest(), mac) is False
    assert client.health()["cached"] == ["sales"]


def test_agent_key_ops_is_a_master_key_ops(agent: AgentFactory) -> None:
    server = agent(CountingSource({"sales": KEY}))
    ops = AgentKeyOps(KeyAgentClient(server.socket_path), "sales", KID)
    local = LocalMasterKey(KID, KEY)
    assert ops.key_id == KID
    assert local.unwrap(ops.wrap(KEK)) == KEK
    assert ops.unwrap(local.wrap(KEK)) == KEK
    assert ops.key_check() == local.key_check()
    assert ops.check_mac(DIGEST, local.mac(DIGEST))
    assert not ops.check_mac(DIGEST, "not a mac")  # refused without asking
    assert ops.mac(DIGEST) == local.mac(DIGEST)


def test_get_key_is_gone_and_returns_no_key(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY})
    server = agent(source)
    for request in (
        {"op": "get_key", "dataset": "sales"},
        {"op": "get_key", "dataset": "sales", "key_id": KID},
        {"op": "GET_KEY", "dataset": "sales"},
        {"op": "key", "dataset": "sales"},
    ):
        answers, rest = raw(server.socket_path, json.dumps(request).encode() + b"\n")
        assert [a["code"] for a in answers] == ["keyagent.bad_request"]
        assert set(answers[0]) == {"ok", "code", "message"}
        assert "unknown op" in answers[0]["message"]
        text = json.dumps(answers).encode() + rest
        assert not any(form in text for form in forms(KEY))
    assert source.calls == []


def test_no_answer_of_any_op_holds_the_master_key_or_the_mac_key(agent: AgentFactory) -> None:
    """An attacker on the socket tries every op, well-formed and not: no key comes back."""
    key = b"SENTINEL" + os.urandom(24)
    server = agent(CountingSource({"sales": key}))
    local = LocalMasterKey(KID, key)
    wrapped = local.wrap(KEK)
    requests = [
        {"op": "health"},
        {"op": "unwrap", "dataset": "sales", "key_id": KID, "wrapped": wrapped},
        {"op": "unwrap", "dataset": "sales", "key_id": "org-a/other", "wrapped": wrapped},
        {"op": "wrap", "dataset": "sales", "key_id": KID, "key": base64.b64encode(KEK).decode()},
        {"op": "key_check", "dataset": "sales", "key_id": KID},
        {"op": "mac", "dataset": "sales", "key_id": KID, "digest": DIGEST.hex()},
        {
            "op": "check_mac",
            "dataset": "sales",
            "key_id": KID,
            "digest": DIGEST.hex(),
            "mac": "0" * 64,
        },
        {"op": "latest_version", "dataset": "sales"},
        {"op": "record_version", "dataset": "sales", "version": 1, "digest": "sha256:" + "0" * 64},
        {"op": "get_key", "dataset": "sales"},
        {"op": "release", "dataset": "sales"},
        {"op": "unwrap", "dataset": "sales", "key_id": KID, "wrapped": "A" * 80},
    ]
    payload = b"".join(json.dumps(r).encode() + b"\n" for r in requests)
    answers, rest = raw(server.socket_path, payload)
    assert len(answers) == len(requests)
    text = json.dumps(answers).encode() + rest
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    okm = HKDF(hashes.SHA256(), 64, None, b"jobruntime/manifest/v1|" + KID.encode()).derive(key)
    for secret in (key, okm, okm[:32], okm[32:]):
        assert not any(form in text for form in forms(secret))
    assert [a.get("key") for a in answers if "key" in a] == [base64.b64encode(KEK).decode()]


def test_inputs_may_be_read_but_not_written(agent: AgentFactory) -> None:
    source = StaticKeySource({"sales": KEY}, writable=(), key_ids={"sales": KID})
    client = KeyAgentClient(agent(source).socket_path)
    local = LocalMasterKey(KID, KEY)
    assert client.unwrap("sales", KID, local.wrap(KEK)) == KEK
    assert client.key_check("sales", KID) == local.key_check()
    assert client.check_mac("sales", KID, DIGEST, local.mac(DIGEST))
    assert client.latest_version("sales") is None
    refusals: list[Callable[[], object]] = [
        lambda: client.wrap("sales", KID, KEK),
        lambda: client.mac("sales", KID, DIGEST),
        lambda: client.record_version("sales", 1, "sha256:" + "a" * 64),
    ]
    for refused in refusals:
        with pytest.raises(NotWritableError) as info:
            refused()
        assert info.value.remote_code == "keyagent.not_writable"
    assert client.latest_version("sales") is None  # nothing was recorded


def test_dataset_outside_the_spec_is_refused_without_calling_the_source(
    agent: AgentFactory,
) -> None:
    source = CountingSource({"sales": KEY, "secret": b"s" * 32}, allowed={"sales"})
    client = KeyAgentClient(agent(source).socket_path)
    wrapped = LocalMasterKey(KID, b"s" * 32).wrap(KEK)
    refusals: list[Callable[[], object]] = [
        lambda: client.unwrap("secret", KID, wrapped),
        lambda: client.wrap("secret", KID, KEK),
        lambda: client.key_check("secret", KID),
        lambda: client.mac("secret", KID, DIGEST),
        lambda: client.check_mac("secret", KID, DIGEST, "0" * 64),
        lambda: client.latest_version("secret"),
        lambda: client.record_version("secret", 1, "sha256:" + "a" * 64),
    ]
    for refused in refusals:
        with pytest.raises(NotInSpecError, match="secret") as info:
            refused()
        assert info.value.remote_code == "keyagent.not_in_spec"
    assert source.calls == []


def test_a_key_id_other_than_the_specs_is_refused(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY}, key_ids={"sales": KID})
    client = KeyAgentClient(agent(source).socket_path)
    with pytest.raises(KeyMismatchError, match="org-a/sales") as info:
        client.wrap("sales", "org-b/sales", KEK)
    assert info.value.remote_code == "keyagent.key_mismatch"
    with pytest.raises(KeyMismatchError):
        client.key_check("sales", "org-b/sales")
    with pytest.raises(KeyMismatchError):
        client.unwrap("sales", "org-b/sales", LocalMasterKey("org-b/sales", KEY).wrap(KEK))
    assert source.calls == []


def test_the_key_id_is_the_aad_of_a_wrapped_key(agent: AgentFactory) -> None:
    """With no key id pinned, a KEK wrapped for one key id still does not unwrap as another."""
    client = KeyAgentClient(agent(CountingSource({"sales": KEY})).socket_path)
    wrapped = client.wrap("sales", KID, KEK)
    with pytest.raises(UnwrapFailedError) as info:
        client.unwrap("sales", "org-a/other", wrapped)
    assert info.value.remote_code == "keyagent.unwrap_failed"
    assert wrapped not in info.value.message
    assert client.key_check("sales", KID) != client.key_check("sales", "org-a/other")


def _b64(n: int) -> str:
    return base64.b64encode(b"k" * n).decode()


GOOD = {"dataset": "sales", "key_id": KID}


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"op": "wrap", **GOOD, "key": _b64(33)}, "key"),
        ({"op": "wrap", **GOOD, "key": _b64(8)}, "key"),
        ({"op": "wrap", **GOOD, "key": _b64(16).rstrip("=")}, "key"),
        ({"op": "wrap", **GOOD, "key": "AAAAAAAAAAAAAAAAAAAAAB=="}, "key"),  # non-canonical
        ({"op": "wrap", **GOOD, "key": 16}, "key"),
        ({"op": "wrap", **GOOD}, "key"),
        ({"op": "unwrap", **GOOD, "wrapped": _b64(61)}, "wrapped"),
        ({"op": "unwrap", **GOOD, "wrapped": _b64(43)}, "wrapped"),
        ({"op": "unwrap", **GOOD, "wrapped": "A" * 2000}, "wrapped"),
        ({"op": "unwrap", **GOOD, "wrapped": _b64(60)[:-1] + "*"}, "wrapped"),
        ({"op": "mac", **GOOD, "digest": "ab" * 31}, "digest"),
        ({"op": "mac", **GOOD, "digest": "AB" * 32}, "digest"),
        ({"op": "mac", **GOOD, "digest": "ab" * 32 + "\n"}, "digest"),
        ({"op": "check_mac", **GOOD, "digest": "ab" * 32, "mac": "00" * 33}, "mac"),
        ({"op": "key_check", "dataset": "sales", "key_id": "x" * 129}, "key_id"),
        ({"op": "key_check", "dataset": "sales", "key_id": "org a/sales"}, "key_id"),
        ({"op": "key_check", "dataset": "sales", "key_id": "/leading"}, "key_id"),
        ({"op": "key_check", "dataset": "sales"}, "key_id"),
        ({"op": "key_check", "dataset": "s" * 129, "key_id": KID}, "dataset"),
        ({"op": "key_check", "dataset": "", "key_id": KID}, "dataset"),
        ({"op": "key_check", "dataset": ["sales"], "key_id": KID}, "dataset"),
        (
            {
                "op": "record_version",
                "dataset": "sales",
                "version": True,
                "digest": "sha256:" + "a" * 64,
            },
            "version",
        ),
        (
            {
                "op": "record_version",
                "dataset": "sales",
                "version": 0,
                "digest": "sha256:" + "a" * 64,
            },
            "version",
        ),
        (
            {
                "op": "record_version",
                "dataset": "sales",
                "version": 2**31,
                "digest": "sha256:" + "a" * 64,
            },
            "version",
        ),
        ({"op": "record_version", "dataset": "sales", "version": 1, "digest": "a" * 64}, "digest"),
        ({"op": ["wrap"], **GOOD}, "op"),
    ],
)
def test_malformed_or_oversized_fields_are_refused_before_any_release(
    agent: AgentFactory, request_: dict[str, Any], field: str
) -> None:
    source = CountingSource({"sales": KEY})
    answer = ask(agent(source).socket_path, **request_)
    assert answer["ok"] is False
    assert answer["code"] == "keyagent.bad_request"
    assert field in answer["message"]
    assert source.calls == []


def test_concurrent_clients_cause_exactly_one_release(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY}, delay=0.2)
    client = KeyAgentClient(agent(source).socket_path)
    barrier = threading.Barrier(16)
    results: list[str] = []

    def run() -> None:
        barrier.wait()
        results.append(client.key_check("sales", KID))

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [LocalMasterKey(KID, KEY).key_check()] * 16
    assert source.calls == ["sales"]


def test_source_error_passes_through_with_its_code_once(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY}, error=AttestationError("report_data does not bind"))
    client = KeyAgentClient(agent(source).socket_path)
    for _ in range(2):
        with pytest.raises(KeyAgentError) as info:
            client.key_check("sales", KID)
        assert info.value.remote_code == "attestation.invalid"
        assert info.value.one_line() == "attestation.invalid: report_data does not bind"
    assert source.calls == ["sales"]  # a failed release is not retried by the agent


def test_unexpected_source_failure_is_typed_and_says_no_more(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY}, error=ValueError(f"oops {KEY.hex()}"))
    client = KeyAgentClient(agent(source).socket_path)
    with pytest.raises(KeySourceError) as info:
        client.key_check("sales", KID)
    assert info.value.message.endswith("unexpected ValueError")


def test_a_key_that_is_not_32_bytes_is_a_source_failure(agent: AgentFactory) -> None:
    client = KeyAgentClient(agent(CountingSource({"short": b"k" * 16})).socket_path)
    with pytest.raises(KeySourceError, match="32-byte key"):
        client.wrap("short", KID, KEK)


def test_static_source_grants() -> None:
    source = StaticKeySource(
        {"a": KEY, "b": KEY, "c": KEY}, allowed={"a", "b"}, writable={"b"}, key_ids={"a": KID}
    )
    assert {n: (g.key_id, g.writable) for n, g in source.grants.items()} == {
        "a": (KID, False),
        "b": (None, True),
    }
    assert all(g.writable and g.key_id is None for g in StaticKeySource({"a": KEY}).grants.values())


def test_oversized_request_line_is_refused_and_closed(agent: AgentFactory) -> None:
    server = agent(CountingSource({"a": KEY}))
    answers, rest = raw(server.socket_path, b'{"op": "health", "pad": "' + b"x" * 5000 + b'"}\n')
    assert [a["code"] for a in answers] == ["keyagent.request_too_large"]
    assert rest == b""


def test_request_exactly_at_the_limit_is_served(agent: AgentFactory) -> None:
    server = agent(CountingSource({"a": KEY}))
    line = b'{"op": "health"' + b" " * (MAX_REQUEST - 17) + b"}\n"
    assert len(line) == MAX_REQUEST
    answers, _ = raw(server.socket_path, line)
    assert answers[0]["ok"] is True


def test_bad_requests_are_answered_and_the_connection_kept(agent: AgentFactory) -> None:
    server = agent(CountingSource({"a": KEY}))
    payload = b"not json\n[1]\n" + b'{"op": "nope"}\n{"op": "get_key"}\n\xff\n{"op": "health"}\n'
    answers, _ = raw(server.socket_path, payload)
    assert [a.get("code") for a in answers] == ["keyagent.bad_request"] * 5 + [None]
    assert answers[-1]["ok"] is True


def test_idle_connection_is_closed(agent: AgentFactory) -> None:
    server = agent(CountingSource({"a": KEY}), idle_timeout=0.2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3.0)
        s.connect(str(server.socket_path))
        assert s.recv(1) == b""


def test_close_removes_the_socket_and_hangs_up_on_clients(agent: AgentFactory) -> None:
    server = agent(CountingSource({"a": KEY}))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as kept:
        kept.settimeout(2.0)
        kept.connect(str(server.socket_path))
        kept.sendall(b'{"op": "health"}\n')
        assert kept.recv(4096).endswith(b"\n")  # accepted and served, now idle
        server.close()
        assert not server.socket_path.exists()
        assert kept.recv(1) == b""
    with pytest.raises(KeyAgentUnavailableError, match="cannot connect"):
        KeyAgentClient(server.socket_path).health()


def test_missing_socket_is_unavailable(shm_dir: Path) -> None:
    with pytest.raises(KeyAgentUnavailableError) as info:
        KeyAgentClient(shm_dir / "none.sock").key_check("a", KID)
    assert info.value.code == "keyagent.unavailable"
    assert "is the key-agent sidecar running" in info.value.message


def test_stale_socket_is_replaced(agent: AgentFactory, shm_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(shm_dir / "agent.sock"))
    stale.close()  # the file stays, nobody listens
    server = agent(CountingSource({"a": KEY}))
    assert KeyAgentClient(server.socket_path).health()["datasets"] == ["a"]


def test_live_socket_and_other_files_are_not_replaced(agent: AgentFactory, shm_dir: Path) -> None:
    first = agent(CountingSource({"a": KEY}))
    with pytest.raises(SocketPathError, match="another process is listening"):
        KeyAgentServer(first.socket_path, CountingSource({"a": KEY}))
    assert KeyAgentClient(first.socket_path).health()["ok"] is True
    (shm_dir / "file").write_text("keep me")
    with pytest.raises(SocketPathError, match="not a socket"):
        KeyAgentServer(shm_dir / "file", CountingSource({"a": KEY}))
    assert (shm_dir / "file").read_text() == "keep me"


def test_close_overwrites_cached_keys() -> None:
    cache = KeyCache(StaticKeySource({"a": KEY}))
    assert cache.ops("a", KID, write=True).key_check() == LocalMasterKey(KID, KEY).key_check()
    held = cache._keys["a"]
    cache.close()
    assert held == bytearray(len(KEY))
    with pytest.raises(KeyAgentUnavailableError):
        cache.ops("a", KID, write=False)


def test_no_key_bytes_in_the_log(agent: AgentFactory, caplog: pytest.LogCaptureFixture) -> None:
    sentinel = b"SENTINEL-KEY-" + os.urandom(19)
    caplog.set_level("DEBUG", logger="jobruntime.keyagent")
    source = CountingSource({"sales": sentinel, "bad": b"x"}, allowed={"sales", "bad", "other"})
    server = agent(source)
    client = KeyAgentClient(server.socket_path)
    wrapped = client.wrap("sales", KID, KEK)
    assert client.unwrap("sales", KID, wrapped) == KEK
    client.mac("sales", KID, DIGEST)
    client.health()
    with pytest.raises(NotInSpecError):
        client.key_check("nope", KID)
    with pytest.raises(KeySourceError):
        client.key_check("other", KID)  # the source's KeyError: an unexpected failure
    with pytest.raises(KeySourceError):
        client.key_check("bad", KID)  # not a 32-byte key
    with pytest.raises(UnwrapFailedError):
        client.unwrap("sales", "org-a/x", wrapped)
    server.close()
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "released the key of dataset sales" in text
    for secret in (sentinel, KEK):
        for form in forms(secret):
            assert form.decode("latin-1") not in text


def test_client_refuses_an_agent_of_another_uid(
    agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = agent(CountingSource({"a": KEY}))
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # as if the reader ran as uid 4242
    with pytest.raises(PeerRefusedError, match="runs as uid 0"):
        KeyAgentClient(server.socket_path).key_check("a", KID)


def test_connections_beyond_the_cap_are_refused_not_threaded(agent: AgentFactory) -> None:
    """A local peer opening connections without end gets a bounded number of threads."""
    server = agent(CountingSource({"sales": KEY}), max_connections=2)
    held = []
    for _ in range(2):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(server.socket_path))
        held.append(s)
    client = KeyAgentClient(server.socket_path)
    deadline = time.monotonic() + 10
    refused: BusyError | None = None
    while refused is None:  # the two held connections are registered by the accept thread
        try:
            client.health()
        except BusyError as exc:
            refused = exc
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert refused.remote_code == "keyagent.busy"
    for s in held:
        s.close()
    deadline = time.monotonic() + 10
    while True:  # closed connections free their slots
        try:
            assert client.health()["ok"] is True
            break
        except BusyError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
