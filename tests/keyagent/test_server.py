"""The agent over real Unix sockets: permissions, protocol, caching, refusals, shutdown."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from jobruntime.errors import AttestationError
from jobruntime.keyagent.cache import KeyCache
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.errors import (
    KeyAgentError,
    KeyAgentUnavailableError,
    KeySourceError,
    NotInSpecError,
    PeerRefusedError,
    SocketPathError,
)
from jobruntime.keyagent.protocol import MAX_REQUEST
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource
from tests.keyagent.conftest import AgentFactory, CountingSource

KEY = bytes(range(32))


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


def test_socket_is_0600_in_a_new_0700_dir(agent: AgentFactory, shm_dir: Path) -> None:
    server = agent(CountingSource({"a": KEY}), name="sub/dir/agent.sock")
    assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(server.socket_path).st_mode)
    assert stat.S_IMODE(os.stat(shm_dir / "sub" / "dir").st_mode) == 0o700


def test_client_gets_an_allowed_key_and_health_names_only(agent: AgentFactory) -> None:
    server = agent(CountingSource({"sales": KEY, "out": b"o" * 32}))
    client = KeyAgentClient(server.socket_path)
    assert client.health() == {"ok": True, "datasets": ["out", "sales"], "cached": []}
    assert client.get_key("sales") == KEY
    assert client.get_key("sales") == KEY
    health = client.health()
    assert health["cached"] == ["sales"]
    assert base64.b64encode(KEY).decode() not in json.dumps(health)


def test_dataset_not_in_spec_is_refused_without_calling_the_source(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY, "secret": b"s" * 32}, allowed={"sales"})
    client = KeyAgentClient(agent(source).socket_path)
    with pytest.raises(NotInSpecError, match="secret") as info:
        client.get_key("secret")
    assert info.value.remote_code == "keyagent.not_in_spec"
    assert source.calls == []


def test_concurrent_clients_cause_exactly_one_release(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY}, delay=0.2)
    client = KeyAgentClient(agent(source).socket_path)
    barrier = threading.Barrier(16)
    results: list[bytes] = []

    def ask() -> None:
        barrier.wait()
        results.append(client.get_key("sales"))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [KEY] * 16
    assert source.calls == ["sales"]


def test_source_error_passes_through_with_its_code_once(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY}, error=AttestationError("report_data does not bind"))
    client = KeyAgentClient(agent(source).socket_path)
    for _ in range(2):
        with pytest.raises(KeyAgentError) as info:
            client.get_key("sales")
        assert info.value.remote_code == "attestation.invalid"
        assert info.value.one_line() == "attestation.invalid: report_data does not bind"
    assert source.calls == ["sales"]  # a failed release is not retried by the agent


def test_unexpected_source_failure_is_typed_and_says_no_more(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY}, error=ValueError(f"oops {KEY.hex()}"))
    client = KeyAgentClient(agent(source).socket_path)
    with pytest.raises(KeySourceError) as info:
        client.get_key("sales")
    assert info.value.message.endswith("unexpected ValueError")


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
        KeyAgentClient(shm_dir / "none.sock").get_key("a")
    assert info.value.code == "keyagent.unavailable"
    assert "is the key-agent sidecar running" in info.value.message


def test_stale_socket_is_replaced(agent: AgentFactory, shm_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(shm_dir / "agent.sock"))
    stale.close()  # the file stays, nobody listens
    server = agent(CountingSource({"a": KEY}))
    assert KeyAgentClient(server.socket_path).get_key("a") == KEY


def test_live_socket_and_other_files_are_not_replaced(agent: AgentFactory, shm_dir: Path) -> None:
    first = agent(CountingSource({"a": KEY}))
    with pytest.raises(SocketPathError, match="another process is listening"):
        KeyAgentServer(first.socket_path, CountingSource({"a": KEY}))
    assert KeyAgentClient(first.socket_path).get_key("a") == KEY
    (shm_dir / "file").write_text("keep me")
    with pytest.raises(SocketPathError, match="not a socket"):
        KeyAgentServer(shm_dir / "file", CountingSource({"a": KEY}))
    assert (shm_dir / "file").read_text() == "keep me"


def test_close_overwrites_cached_keys() -> None:
    cache = KeyCache(StaticKeySource({"a": KEY}))
    assert cache.get("a") == KEY
    held = cache._keys["a"]
    cache.close()
    assert held == bytearray(len(KEY))
    with pytest.raises(KeyAgentUnavailableError):
        cache.get("a")


def test_no_key_bytes_in_the_log(agent: AgentFactory, caplog: pytest.LogCaptureFixture) -> None:
    sentinel = b"SENTINEL-KEY-" + os.urandom(19)
    caplog.set_level("DEBUG", logger="jobruntime.keyagent")
    source = CountingSource({"sales": sentinel, "bad": b"x"}, allowed={"sales", "bad", "other"})
    server = agent(source)
    client = KeyAgentClient(server.socket_path)
    assert client.get_key("sales") == sentinel
    client.health()
    with pytest.raises(NotInSpecError):
        client.get_key("nope")
    with pytest.raises(KeySourceError):
        client.get_key("other")  # the source's KeyError: an unexpected failure
    server.close()
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "released the key of dataset sales" in text
    for form in (sentinel, base64.b64encode(sentinel), sentinel.hex().encode()):
        assert form.decode("latin-1") not in text


def test_client_refuses_an_agent_of_another_uid(
    agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = agent(CountingSource({"a": KEY}))
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # as if the reader ran as uid 4242
    with pytest.raises(PeerRefusedError, match="runs as uid 0"):
        KeyAgentClient(server.socket_path).get_key("a")
