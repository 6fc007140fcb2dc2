"""The key agent as the pod's local KMS, seen from real Spark: master keys never cross the
socket, and the agent refuses what the spec does not grant (inputs, other datasets,
other key ids)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jobruntime.dataset.versions import local_versions
from jobruntime.storage.uri import open_storage
from tests.dataset.conftest import Agent, AgentFactory, Relay, key_id, sales_table
from tests.tamper import spellings


@pytest.fixture
def relay(agent: Agent) -> Iterator[Relay]:
    r = Relay(agent.socket)
    yield r
    r.close()


def derived(dataset: str, key: bytes) -> list[bytes]:
    """The manifest MAC key and key-check key: they act as keys too."""
    info = b"jobruntime/manifest/v1|" + key_id(dataset).encode()
    okm = HKDF(hashes.SHA256(), 64, None, info).derive(key)
    return [okm, okm[:32], okm[32:]]


def test_no_master_key_crosses_the_socket_in_a_full_write_and_read(
    spark: Any, agent: Agent, relay: Relay, tmp_path: Path
) -> None:
    spied = Agent(relay.path, agent.keys)  # every reader and writer talks through the relay
    uri = str(tmp_path / "sales")
    table = sales_table(3000)
    spied.write(spark.createDataFrame(table.to_pandas()).repartition(3), "sales", uri)
    spied.write(spark.createDataFrame(table.to_pandas()).repartition(2), "sales", uri)
    back = spied.reader(spark, "sales", uri)
    assert back.count() == 3000
    assert back.where("id = 7").count() == 1
    # The attacker on the socket asks for the key outright.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(relay.path))
        s.sendall(b'{"op": "get_key", "dataset": "sales", "key_id": "org-a/sales"}\n')
        refusal = json.loads(s.makefile("rb").readline())
    assert refusal["code"] == "keyagent.bad_request"
    assert set(refusal) == {"ok", "code", "message"}
    # Every byte the agent sent, and every byte sent to it.
    answers = [json.loads(line) for line in bytes(relay.answers).splitlines()]
    kinds = {field for a in answers for field in a} - {"ok"}
    assert {"wrapped", "key", "key_check", "mac", "valid", "version"} <= kinds, kinds
    wire = bytes(relay.answers) + bytes(relay.requests)
    for dataset, key in agent.keys.items():
        for secret in (key, *derived(dataset, key)):
            for form in spellings(secret):
                assert form not in wire, dataset
    assert local_versions(open_storage(uri)) == [1, 2]


def refused(action: Any) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - Spark wraps it; the text names ours
        action()
    return str(info.value)


def test_writing_an_input_is_refused(spark: Any, agents: AgentFactory, tmp_path: Path) -> None:
    agent = agents(writable={"other"})
    uri = str(tmp_path / "sales")
    text = refused(lambda: agent.write(spark.range(10), "sales", uri))
    assert "NotWritableError" in text and "read only" in text
    assert local_versions(open_storage(uri)) == []


def test_a_dataset_outside_the_spec_is_refused(
    spark: Any, agents: AgentFactory, tmp_path: Path
) -> None:
    agent = agents(allowed={"sales"})
    uri = str(tmp_path / "other")
    assert "NotInSpecError" in refused(lambda: agent.write(spark.range(10), "other", uri))
    assert "NotInSpecError" in refused(lambda: agent.reader(spark, "other", uri).collect())
    assert local_versions(open_storage(uri)) == []


def test_a_key_id_other_than_the_specs_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri = str(tmp_path / "sales")
    text = refused(lambda: agent.write(spark.range(10), "sales", uri, key="org-b/forged"))
    assert "KeyMismatchError" in text and "org-a/sales" in text
    assert local_versions(open_storage(uri)) == []
