"""The key agent's line protocol, from both ends.

The agent reads request lines from any process of its uid (a job module included);
readers read its answers. Requests are fuzzed through the real server's dispatcher
with valid operations as seeds (so field checks and grants are reached); answers go
through the real client over a Unix socket from a stand-in agent that sends them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.errors import BadRequestError, KeyAgentError
from jobruntime.keyagent.protocol import MAX_REQUEST, decode, encode, read_line
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import Grant
from tests.fuzz.support import Refused, byte_mutation, dump, json_inputs, pathological, typed

KEY_IDS = {"sales": "org-a/sales", "summary": "org-a/summary"}


def master_key(dataset: str) -> bytes:
    return hashlib.sha256(b"fuzz " + dataset.encode()).digest()


class Source:
    """An input and an output, with versions: every op has a dataset it may act on."""

    grants: ClassVar[dict[str, Grant]] = {
        "sales": Grant(key_id=KEY_IDS["sales"], writable=False),
        "summary": Grant(key_id=KEY_IDS["summary"], writable=True),
    }

    def release(self, dataset: str) -> bytes:
        return master_key(dataset)

    def latest_version(self, dataset: str) -> tuple[int, str] | None:
        return 3, "sha256:" + "0" * 64

    def record_version(self, dataset: str, version: int, digest: str) -> None:
        return None


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fuzz-keyagent-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[KeyAgentServer]:
    """Bound, not serving: requests go straight to its dispatcher."""
    agent = KeyAgentServer(workdir / "agent.sock", Source(), require_memory_fs=False)
    yield agent
    agent.close()


def requests() -> list[dict[str, Any]]:
    wrapped = LocalMasterKey(KEY_IDS["sales"], master_key("sales")).wrap(bytes(16))
    digest, mac = "a" * 64, "b" * 64
    out = {"dataset": "summary", "key_id": KEY_IDS["summary"]}
    return [
        {"op": "unwrap", "dataset": "sales", "key_id": KEY_IDS["sales"], "wrapped": wrapped},
        {"op": "wrap", **out, "key": base64.b64encode(bytes(32)).decode()},
        {"op": "key_check", **out},
        {"op": "mac", **out, "digest": digest},
        {
            "op": "check_mac",
            "dataset": "sales",
            "key_id": KEY_IDS["sales"],
            "digest": digest,
            "mac": mac,
        },
        {"op": "latest_version", "dataset": "sales"},
        {"op": "record_version", "dataset": "summary", "version": 4, "digest": "sha256:" + digest},
        {"op": "health"},
    ]


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(requests()))
    return draw(json_inputs(seed, keys=list(seed)))[: MAX_REQUEST - 1] + b"\n"


def test_the_seed_requests_are_served(server: KeyAgentServer) -> None:
    for request in requests():
        answer = server._answer(encode(request), 1)
        assert answer["ok"] is True, (request["op"], answer)


@given(request_lines())
def test_request_lines(server: KeyAgentServer, line: bytes) -> None:
    """Every line gets an answer the protocol can carry; a refusal is a known code, never
    ``internal`` (the dispatcher's name for an exception it did not expect)."""
    answer = typed(server._answer, line, 1)
    assert isinstance(answer, dict)
    encode(answer)
    event(f"answer: {'ok' if answer['ok'] is True else answer['code']}")
    if answer["ok"] is not True:
        assert answer["code"] != JobRuntimeError.code, answer


@given(st.one_of(request_lines(), pathological(), st.binary(max_size=64)))
def test_decode(line: bytes) -> None:
    result = typed(decode, line)
    assert not isinstance(result, Refused) or isinstance(result.error, BadRequestError)


@given(st.one_of(st.binary(max_size=9000), pathological()))
def test_read_line_is_bounded(data: bytes) -> None:
    """A line over the limit is refused after reading at most the limit plus one byte."""
    stream = io.BytesIO(data)
    typed(read_line, stream, MAX_REQUEST)
    assert stream.tell() <= MAX_REQUEST + 1


def test_regression_a_deeply_nested_request_is_a_bad_request(server: KeyAgentServer) -> None:
    """Found by fuzzing: 4096 bytes of ``[`` are a line within the limit that
    ``json.loads`` cannot parse without RecursionError; the agent answered ``internal``."""
    line = b"[" * (MAX_REQUEST - 1) + b"\n"
    with pytest.raises(BadRequestError):
        decode(line)
    assert server._answer(line, 1)["code"] == "keyagent.bad_request"


# --- answers, through the real client -------------------------------------------------------


class StandIn:
    """A Unix socket that answers every request line with ``reply``, then hangs up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reply = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(10)
                try:
                    with conn.makefile("rb") as stream:
                        stream.readline(MAX_REQUEST + 1)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(10)


@pytest.fixture(scope="module")
def stand_in(workdir: Path) -> Iterator[StandIn]:
    agent = StandIn(workdir / "stand-in.sock")
    yield agent
    agent.close()


ANSWERS: list[dict[str, Any]] = [
    {"ok": True, "key": base64.b64encode(bytes(16)).decode()},
    {"ok": True, "wrapped": base64.b64encode(bytes(12 + 32 + 16)).decode()},
    {"ok": True, "key_check": "c" * 64, "mac": "d" * 64, "valid": True},
    {"ok": True, "version": 3, "digest": "sha256:" + "0" * 64},
    {"ok": True, "datasets": ["sales"], "cached": []},
    {"ok": False, "code": "keyagent.not_in_spec", "message": "no"},
    {"ok": False, "code": "attestation.tcb_too_low", "message": "remote code"},
]

CALLS: list[Callable[[KeyAgentClient], Any]] = [
    lambda c: c.unwrap("sales", KEY_IDS["sales"], "AAAA"),
    lambda c: c.wrap("summary", KEY_IDS["summary"], bytes(32)),
    lambda c: c.key_check("sales", KEY_IDS["sales"]),
    lambda c: c.mac("summary", KEY_IDS["summary"], bytes(32)),
    lambda c: c.check_mac("sales", KEY_IDS["sales"], bytes(32), "d" * 64),
    lambda c: c.latest_version("sales"),
    lambda c: c.record_version("summary", 4, "sha256:" + "0" * 64),
    lambda c: c.health(),
]


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(ANSWERS))
    body = draw(st.one_of(json_inputs(seed, keys=list(seed)), pathological()))
    return draw(st.sampled_from([body + b"\n", body, draw(byte_mutation(dump(seed) + b"\n"))]))


@given(answers(), st.sampled_from(CALLS))
def test_client_answers(stand_in: StandIn, answer: bytes, call: Callable[..., Any]) -> None:
    """A reader (pyarrow's KMS client, the manifest code) gets a value or a KeyAgentError."""
    stand_in.reply = answer
    client = KeyAgentClient(stand_in.path, timeout=10)
    result = typed(call, client)
    assert not isinstance(result, Refused) or isinstance(result.error, KeyAgentError)


def test_regression_a_deeply_nested_answer_is_a_key_agent_error(stand_in: StandIn) -> None:
    """Found by fuzzing: the client's ``decode`` raised RecursionError on an answer line."""
    stand_in.reply = b"[" * 5000 + b"\n"
    with pytest.raises(KeyAgentError):
        KeyAgentClient(stand_in.path, timeout=10).health()
