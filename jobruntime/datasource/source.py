"""``ConfidentialDataSource``: encrypted Parquet datasets as a Spark Python data source.

Reading, on the driver: the latest version's manifest is fetched, authenticated
by the key agent (key check and MAC under the dataset key, which stays in the
agent), checked against the control plane's record and against the files in
storage; one partition per file. On executors: each file's ciphertext is hashed
against the manifest before it is decrypted (the agent unwraps the file's KEK),
and row groups the pushed filters exclude are skipped.

Writing: each task encrypts its rows into one part in a staging area (the agent
wraps its KEK); the commit, on the driver, checks every part, moves them into a
new version directory and publishes the manifest (MAC by the agent) with one
create-if-absent; an abort removes the staging.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    Filter,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from jobruntime.dataset import files, versions
from jobruntime.dataset.errors import DatasetError, ManifestMissingError, WriteError
from jobruntime.dataset.manifest import AnyFileEntry, Manifest
from jobruntime.datasource.filters import Bound, bounds, row_group_filter
from jobruntime.datasource.options import Options
from jobruntime.keyagent.errors import KeyAgentError


class ConfidentialDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "confidential"

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        self._options = Options.parse(options)
        self._manifest: Manifest | None = None

    def _latest(self) -> Manifest:
        if self._manifest is None:
            o = self._options
            storage, registry = o.storage(), o.registry()
            # Not told the key id: the manifest's claim picks the key, which then verifies it.
            key_id = o.key_id or versions.declared_key_id(storage, o.uri, registry)
            found = (
                versions.open_latest(storage, o.uri, o.ops(key_id), registry) if key_id else None
            )
            if found is None:
                raise ManifestMissingError(f"{o.uri}: no version has been written")
            self._manifest = found
        return self._manifest

    def schema(self) -> StructType:
        return from_arrow_schema(self._latest().schema)

    def reader(self, schema: StructType) -> ConfidentialReader:
        return ConfidentialReader(self._options, self._latest())

    def writer(self, schema: StructType, overwrite: bool) -> ConfidentialWriter:
        return ConfidentialWriter(self._options, schema, overwrite)


@dataclass(frozen=True)
class FilePartition(InputPartition):
    entry: AnyFileEntry | None


class ConfidentialReader(DataSourceReader):
    def __init__(self, options: Options, manifest: Manifest) -> None:
        self._options = options
        self._key_id = manifest.key_id
        self._files: list[AnyFileEntry] = [*manifest.files]
        self._names = list(manifest.schema.names)
        self._bounds: list[Bound] = []

    def pushFilters(self, filters: list[Filter]) -> list[Filter]:
        self._bounds = bounds(filters)
        return list(filters)  # Spark re-applies all of them: skipping is only an optimisation

    def partitions(self) -> list[FilePartition]:
        return [FilePartition(e) for e in self._files] or [FilePartition(None)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        entry = partition.entry if isinstance(partition, FilePartition) else None
        if entry is None:
            return
        o = self._options
        data = files.read_verified(o.storage(), entry, o.uri)
        keep = row_group_filter(self._bounds, self._names)
        yield from files.decrypt(data, o.ops(self._key_id), o.uri, entry.path, keep)


@dataclass(frozen=True)
class PartMessage(WriterCommitMessage):
    partition: int
    part: files.WrittenFile


class ConfidentialWriter(DataSourceArrowWriter):
    def __init__(self, options: Options, schema: StructType, overwrite: bool) -> None:
        if not options.key_id:
            raise WriteError(f"{options.uri}: writing needs .option('keyId', ...)")
        self._options = options
        self._key_id: str = options.key_id
        # Spark sends timestamps as UTC instants; the files store them so.
        self._arrow_schema = to_arrow_schema(schema, timezone="UTC")
        self._write_id = versions.new_write_id()
        if not overwrite and options.registry().latest() is not None:
            raise WriteError(f"{options.uri} exists: write a new version with mode('overwrite')")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> PartMessage:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        partition = ctx.partitionId() if ctx else 0
        attempt = ctx.attemptNumber() if ctx else 0
        o = self._options
        path = versions.staging_path(self._write_id, partition, attempt)
        batches = (
            b.cast(self._arrow_schema) if b.schema != self._arrow_schema else b for b in iterator
        )
        part = files.write(o.storage(), path, batches, self._arrow_schema, o.ops(self._key_id))
        return PartMessage(partition, part)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        o = self._options
        storage = o.storage()
        try:
            staged = [(m.partition, m.part) for m in messages if isinstance(m, PartMessage)]
            versions.commit(
                storage, o.uri, o.ops(self._key_id), self._arrow_schema, staged, o.registry()
            )
        except (DatasetError, KeyAgentError):  # typed: keep the code (a refusal, say)
            raise
        except Exception as exc:
            raise WriteError(f"{o.uri}: commit failed ({type(exc).__name__})") from None
        finally:
            versions.abort(storage, self._write_id)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        versions.abort(self._options.storage(), self._write_id)
