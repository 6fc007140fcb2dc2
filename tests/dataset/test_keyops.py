"""Master key operations without Spark: the documented formats, and the agent and an
owner's in-memory key agreeing on every byte, so either can read what the other wrote."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jobruntime.dataset import files, owner, versions
from jobruntime.dataset.errors import DecryptError, ManifestInvalidError, WrongKeyError
from jobruntime.dataset.keyops import LocalMasterKey, body_digest
from jobruntime.dataset.manifest import Manifest, load_verified
from jobruntime.keyagent.client import AgentKeyOps, KeyAgentClient
from jobruntime.keyagent.errors import KeyMismatchError, NotWritableError
from jobruntime.storage.local import LocalStorage
from tests.dataset.conftest import AgentFactory, key_id

KEY_ID, URI = "org-a/sales", "file:///sales"
SCHEMA = pa.schema([("id", pa.int64())])


def batches(rows: int) -> list[pa.RecordBatch]:
    return [pa.record_batch([pa.array(range(rows), pa.int64())], schema=SCHEMA)]


def test_local_key_formats_are_the_documented_ones() -> None:
    key, kek = os.urandom(32), os.urandom(16)
    ops = LocalMasterKey(KEY_ID, key)
    blob = base64.b64decode(ops.wrap(kek))
    assert len(blob) == 12 + 16 + 16
    assert AESGCM(key).decrypt(blob[:12], blob[12:], KEY_ID.encode()) == kek
    with pytest.raises(DecryptError):
        LocalMasterKey("org-a/other", key).unwrap(ops.wrap(kek))  # the key id is the AAD
    okm = HKDF(hashes.SHA256(), 64, None, b"jobruntime/manifest/v1|" + KEY_ID.encode()).derive(key)
    assert ops.key_check() == hmac.new(okm[32:], b"key-check", hashlib.sha256).hexdigest()
    digest = hashlib.sha256(b"body").digest()
    expected = hmac.new(okm[:32], b"jobruntime/manifest/v1|" + digest, hashlib.sha256)
    assert ops.mac(digest) == expected.hexdigest()
    assert ops.check_mac(digest, expected.hexdigest())
    assert not ops.check_mac(digest, "0" * 64)
    assert not ops.check_mac(digest, "é" * 64)
    with pytest.raises(ValueError, match="32-byte digest"):
        ops.mac(b"body")
    with pytest.raises(WrongKeyError):
        LocalMasterKey(KEY_ID, os.urandom(16))
    assert key.hex() not in repr(ops)


def test_what_the_agent_writes_the_owner_reads_and_back(
    agents: AgentFactory, tmp_path: Path
) -> None:
    agent = agents()
    remote = AgentKeyOps(KeyAgentClient(agent.socket), "sales", key_id("sales"))
    local = LocalMasterKey(key_id("sales"), agent.keys["sales"])
    storage = LocalStorage(tmp_path)
    # The agent writes (wraps KEKs, MACs the manifest), the owner reads with its own key.
    one = owner.encrypt(SCHEMA, iter(batches(10)), storage, URI, remote, None)
    assert owner.latest(storage, URI, local, None) == one
    # The owner writes version 2; the agent verifies and decrypts it.
    two = owner.encrypt(SCHEMA, iter(batches(20)), storage, URI, local, None)
    assert versions.open_latest(storage, URI, remote, None) == two
    data = files.read_verified(storage, two.files[0], URI)
    assert sum(b.num_rows for b in files.decrypt(data, remote, URI, two.files[0].path)) == 20


def test_manifest_checks_through_the_agent(agents: AgentFactory, tmp_path: Path) -> None:
    agent = agents()
    client = KeyAgentClient(agent.socket)
    ops = AgentKeyOps(client, "sales", key_id("sales"))
    storage = LocalStorage(tmp_path)
    manifest = owner.encrypt(SCHEMA, iter(batches(5)), storage, URI, ops, None)
    data = manifest.model_dump_json().encode()
    assert load_verified(data, ops, URI, "v1") == manifest
    # Another key under the same id, or the right key under another id: a wrong key.
    with pytest.raises(WrongKeyError, match="not the key of manifest"):
        load_verified(data, LocalMasterKey(key_id("sales"), os.urandom(32)), URI, "v1")
    with pytest.raises(WrongKeyError, match="sealed for key org-a/sales"):
        load_verified(data, AgentKeyOps(client, "sales", "org-a/elsewhere"), URI, "v1")
    # Another dataset's key under this key id: the agent refuses to pretend.
    with pytest.raises(KeyMismatchError):
        load_verified(data, AgentKeyOps(client, "other", key_id("sales")), URI, "v1")
    # Altered, or a MAC that is not one: the MAC check refuses it.
    for change in (
        {"rows": 6},
        {"mac": "zz"},
        {"mac": ""},
        {"mac": manifest.mac.upper()},
        {"mac": "é" * 64},  # found in review: non-ASCII once gave exit 70
        {"version": 2**60},
    ):
        altered = manifest.model_copy(update=change).model_dump_json().encode()
        with pytest.raises(ManifestInvalidError):
            load_verified(altered, ops, URI, "v1")
    assert ops.check_mac(body_digest(manifest.body()), manifest.mac)


def test_a_file_under_another_key_id_is_refused_before_the_agent_is_asked(
    agents: AgentFactory,
) -> None:
    agent = agents()
    client = KeyAgentClient(agent.socket)
    data, _, _ = files.encrypt(batches(3), SCHEMA, AgentKeyOps(client, "sales", key_id("sales")))
    other = AgentKeyOps(client, "other", key_id("other"))
    with pytest.raises(DecryptError):
        list(files.decrypt(data, other, URI, "part"))


def test_an_input_is_read_but_not_written_through_the_agent(
    agents: AgentFactory, tmp_path: Path
) -> None:
    agent = agents(writable=())
    storage = LocalStorage(tmp_path)
    local = LocalMasterKey(key_id("sales"), agent.keys["sales"])
    owner.encrypt(SCHEMA, iter(batches(7)), storage, URI, local, None)
    ops = AgentKeyOps(KeyAgentClient(agent.socket), "sales", key_id("sales"))
    manifest = versions.open_latest(storage, URI, ops, None)
    assert manifest is not None and manifest.rows == 7
    with pytest.raises(NotWritableError):
        files.encrypt(batches(1), SCHEMA, ops)
    with pytest.raises(NotWritableError):
        owner.encrypt(SCHEMA, iter(batches(1)), storage, URI, ops, None)
    assert versions.local_versions(storage) == [1]
    assert isinstance(manifest, Manifest)
