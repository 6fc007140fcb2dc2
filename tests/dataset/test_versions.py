"""Publishing versions without Spark: retried tasks, altered staging, racing writers."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from jobruntime.dataset import files, versions
from jobruntime.dataset.errors import FileCorruptError, VersionConflictError, WriteError
from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.storage.local import LocalStorage

KEY_ID, URI = "org-a/sales", "file:///sales"
OPS = LocalMasterKey(KEY_ID, os.urandom(32))
SCHEMA = pa.schema([("id", pa.int64())])


class Registry:
    def __init__(self) -> None:
        self.recorded: tuple[int, str] | None = None

    def latest(self) -> tuple[int, str] | None:
        return self.recorded

    def record(self, version: int, digest: str) -> None:
        if version != (self.recorded[0] if self.recorded else 0) + 1:
            raise VersionConflictError("out of order")
        self.recorded = (version, digest)


def stage(
    storage: LocalStorage, write_id: str, partition: int, attempt: int, rows: int
) -> tuple[int, files.WrittenFile]:
    batch = pa.record_batch([pa.array(range(rows), pa.int64())], schema=SCHEMA)
    path = versions.staging_path(write_id, partition, attempt)
    return partition, files.write(storage, path, [batch], SCHEMA, OPS)


def test_a_retried_task_leaves_no_duplicate(tmp_path: Path) -> None:
    storage, registry = LocalStorage(tmp_path), Registry()
    write_id = versions.new_write_id()
    staged = [
        stage(storage, write_id, 0, 0, 10),
        stage(storage, write_id, 0, 1, 10),
        stage(storage, write_id, 1, 0, 5),
    ]
    manifest = versions.commit(storage, URI, OPS, SCHEMA, staged, registry)
    versions.abort(storage, write_id)
    assert [f.rows for f in manifest.files] == [10, 5]
    assert manifest.rows == 15
    assert not [o for o in storage.list() if o.path.startswith("_staging/")]
    assert versions.open_latest(storage, URI, OPS, registry) == manifest


def test_a_part_altered_in_staging_is_not_published(tmp_path: Path) -> None:
    storage, registry = LocalStorage(tmp_path), Registry()
    write_id = versions.new_write_id()
    part = stage(storage, write_id, 0, 0, 10)
    storage.write(part[1].path, b"PAR1" + b"\0" * (part[1].size - 4))
    with pytest.raises(WriteError, match="changed after its task"):
        versions.commit(storage, URI, OPS, SCHEMA, [part], registry)
    assert versions.local_versions(storage) == []
    assert registry.recorded is None


def test_a_page_altered_in_staging_is_published_but_never_read(tmp_path: Path) -> None:
    """The commit checks a staged part's size and footer digest (a few KiB), not every
    page: a page altered in staging is published, as one altered after the publish
    would be, and every read of it fails authentication. Storage can deny service, not
    change a value."""
    storage, registry = LocalStorage(tmp_path), Registry()
    write_id = versions.new_write_id()
    partition, part = stage(storage, write_id, 0, 0, 10)
    data = bytearray(storage.read(part.path))
    data[10] ^= 0x01  # in the first page module (after the magic and its length)
    storage.write(part.path, bytes(data))
    manifest = versions.commit(storage, URI, OPS, SCHEMA, [(partition, part)], registry)
    entry = manifest.files[0]
    verified = files.read_verified(storage, entry, URI)  # the footer is the genuine one
    with pytest.raises(FileCorruptError, match="failed authentication"):
        list(files.decrypt(verified, OPS, URI, entry.path))


class RacedStorage(LocalStorage):
    """Another writer publishes between our check of the latest version and our create."""

    def create(self, path: str, data: bytes) -> bool:
        return False


def test_the_second_of_two_racing_writers_loses_cleanly(tmp_path: Path) -> None:
    storage, registry = RacedStorage(tmp_path), Registry()
    staged = [stage(storage, "a" * 16, 0, 0, 3)]
    with pytest.raises(VersionConflictError, match="published by another write"):
        versions.commit(storage, URI, OPS, SCHEMA, staged, registry)
    assert not [o for o in storage.list() if o.path.startswith("v000001-")]
    assert registry.recorded is None


def test_versions_chain_to_their_predecessor(tmp_path: Path) -> None:
    storage, registry = LocalStorage(tmp_path), Registry()
    one = versions.commit(storage, URI, OPS, SCHEMA, [stage(storage, "c" * 16, 0, 0, 1)], registry)
    two = versions.commit(storage, URI, OPS, SCHEMA, [stage(storage, "d" * 16, 0, 0, 2)], registry)
    assert (one.previous, two.previous) == (None, one.digest)
    assert registry.recorded == (2, two.digest)
