"""A data owner's own work on its datasets, without Spark: encrypt, decrypt, inspect.

The owner's key comes from the KMS owner API into memory (a
:class:`~jobruntime.dataset.keyops.LocalMasterKey`); files are written and
published exactly as the Spark writer does (staging, checked parts, one manifest).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobruntime.dataset import files, versions
from jobruntime.dataset.errors import DatasetError, ManifestMissingError, SourceEmptyError
from jobruntime.dataset.keyops import MasterKeyOps
from jobruntime.dataset.manifest import Manifest
from jobruntime.errors import ConfigError
from jobruntime.storage.base import Storage

Progress = Callable[[int], None]  # rows done so far


def encrypt(
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    storage: Storage,
    uri: str,
    ops: MasterKeyOps,
    registry: versions.VersionRegistry | None,
    rows_per_file: int = 1_000_000,
    progress: Progress | None = None,
) -> Manifest:
    """Encrypt the batches into a new version of exactly ``rows_per_file`` rows per file
    (the last file holds the rest; never an empty file) and publish it.

    Nothing is visible unless the version is published: on any failure, the source's
    included, the staged parts are removed. No rows at all is refused
    (:class:`SourceEmptyError`): an empty version would replace the dataset's rows.
    """
    if rows_per_file < 1:
        raise ConfigError(f"rows per file must be at least 1, not {rows_per_file}")
    write_id = versions.new_write_id()
    staged: list[tuple[int, files.WrittenFile]] = []
    done = 0
    try:
        for index, chunk in enumerate(_chunks(batches, rows_per_file)):
            path = versions.staging_path(write_id, index, 0)
            part = files.write(storage, path, chunk, schema, ops)
            staged.append((index, part))
            done += part.rows
            if progress:
                progress(done)
        if not staged:
            raise SourceEmptyError(f"{uri}: no rows to encrypt (an empty version is refused)")
        return versions.commit(storage, uri, ops, schema, staged, registry)
    finally:
        versions.abort(storage, write_id)


def _chunks(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    """Exactly ``rows`` rows per chunk, the last one the rest; never an empty chunk.

    Batches are sliced (no copy) where a chunk ends; a chunk is yielded as soon as it is
    full, so the next one starts only when another row comes.
    """
    chunk: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - size, batch.num_rows)
            chunk.append(batch.slice(0, take))
            size += take
            batch = batch.slice(take)
            if size == rows:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk


def latest(
    storage: Storage, uri: str, ops: MasterKeyOps, registry: versions.VersionRegistry | None
) -> Manifest:
    manifest = versions.open_latest(storage, uri, ops, registry)
    if manifest is None:
        raise ManifestMissingError(f"{uri}: no version has been written")
    return manifest


def decrypt(
    storage: Storage,
    uri: str,
    ops: MasterKeyOps,
    registry: versions.VersionRegistry | None,
    target: Path,
    progress: Progress | None = None,
) -> Manifest:
    """Write the plaintext to ``target`` (Parquet or CSV), 0600, whole or not at all."""
    manifest = latest(storage, uri, ops, registry)
    suffix = target.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"{target}: write .parquet or .csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".decrypt-", dir=target.parent)  # 0600
    os.close(fd)
    done = 0
    try:
        schema = manifest.schema
        writer: pq.ParquetWriter | pacsv.CSVWriter = (
            pq.ParquetWriter(tmp, schema) if suffix == ".parquet" else pacsv.CSVWriter(tmp, schema)
        )
        with writer:
            for entry in manifest.files:
                data = files.read_verified(storage, entry, uri)
                for batch in files.decrypt(data, ops, uri, entry.path):
                    writer.write_batch(batch)
                    done += batch.num_rows
                    if progress:
                        progress(done)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def describe(storage: Storage, uri: str) -> Manifest:
    """The newest manifest as stored, NOT authenticated (inspect holds no key)."""
    present = versions.local_versions(storage)
    if not present:
        raise ManifestMissingError(f"{uri}: no manifest found")
    data = storage.read(versions.manifest_path(present[-1]))
    try:
        return Manifest.model_validate_json(data)
    except ValueError:
        raise DatasetError(f"{uri}: manifest v{present[-1]:06d} is malformed") from None
