"""One encrypted Parquet file: written from Arrow batches, read back only once verified.

Before any of a file is decrypted its size and digest are compared with the manifest's:
the footer digest (schema 2, :mod:`jobruntime.dataset.footer`), or the whole file's
SHA-256 (schema 1). A replaced file is refused before it is decoded; under schema 2 an
altered module of the genuine file fails PME's authentication when it is decoded, and
the read fails (``dataset.file_corrupt``) instead of returning anything of it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from jobruntime.dataset import footer, pme
from jobruntime.dataset.errors import (
    FileCorruptError,
    FileMissingError,
    FileTruncatedError,
)
from jobruntime.dataset.keyops import MasterKeyOps
from jobruntime.dataset.manifest import AnyFileEntry, WholeFileEntry
from jobruntime.errors import JobRuntimeError
from jobruntime.storage.base import Storage, StorageNotFoundError

ROW_GROUP_ROWS = 128 * 1024


@dataclass(frozen=True)
class WrittenFile:
    path: str
    size: int
    footer_sha256: str
    rows: int
    row_groups: int


def encrypt(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, ops: MasterKeyOps
) -> tuple[bytes, int, int]:
    """PME Parquet bytes of the batches, with their row and row-group counts."""
    sink = pa.BufferOutputStream()
    rows = 0
    pending: list[pa.RecordBatch] = []
    buffered = 0
    properties = pme.encryption_properties(ops)
    with pq.ParquetWriter(
        sink, schema, encryption_properties=properties, compression="zstd"
    ) as writer:
        for batch in batches:
            if not batch.num_rows:
                continue
            pending.append(batch)
            buffered += batch.num_rows
            rows += batch.num_rows
            # Whole row groups: each write call would otherwise start a new one.
            while buffered >= ROW_GROUP_ROWS:
                table = pa.Table.from_batches(pending, schema)
                writer.write_table(table.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                pending = table.slice(ROW_GROUP_ROWS).to_batches()
                buffered -= ROW_GROUP_ROWS
        if buffered:
            writer.write_table(
                pa.Table.from_batches(pending, schema), row_group_size=ROW_GROUP_ROWS
            )
    data = sink.getvalue().to_pybytes()
    groups = pq.ParquetFile(
        pa.BufferReader(data), decryption_properties=pme.decryption_properties(ops)
    )
    return data, rows, groups.metadata.num_row_groups


def write(
    storage: Storage,
    path: str,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    ops: MasterKeyOps,
) -> WrittenFile:
    data, rows, groups = encrypt(batches, schema, ops)
    digest = footer.of_bytes(data)
    if digest is None:
        raise ValueError("pyarrow wrote a file without an encrypted footer")
    storage.write(path, data)
    return WrittenFile(path, len(data), digest, rows, groups)


def _digest_matches(data: bytes, entry: AnyFileEntry) -> bool:
    if isinstance(entry, WholeFileEntry):
        return hmac.compare_digest(hashlib.sha256(data).hexdigest(), entry.sha256)
    return hmac.compare_digest(footer.of_bytes(data) or "", entry.footer_sha256)


def read_verified(storage: Storage, entry: AnyFileEntry, dataset: str) -> bytes:
    """The file's bytes, only if they are exactly what the manifest lists."""
    try:
        data: bytes = storage.read(entry.path)
    except StorageNotFoundError:
        raise FileMissingError(f"{dataset}: file {entry.path} is missing") from None
    if len(data) != entry.size:
        raise FileTruncatedError(
            f"{dataset}: file {entry.path} is {len(data)} bytes, the manifest says {entry.size}"
        )
    if not _digest_matches(data, entry):
        raise FileCorruptError(f"{dataset}: file {entry.path} was replaced or altered")
    return data


RowGroupFilter = Callable[[pq.RowGroupMetaData], bool]


def decrypt(
    data: bytes,
    ops: MasterKeyOps,
    dataset: str,
    path: str,
    keep: RowGroupFilter | None = None,
    columns: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of the row groups ``keep`` accepts (all by default)."""
    try:
        pf = pq.ParquetFile(
            pa.BufferReader(data), decryption_properties=pme.decryption_properties(ops)
        )
        groups = [
            i
            for i in range(pf.metadata.num_row_groups)
            if keep is None or keep(pf.metadata.row_group(i))
        ]
        if groups:
            yield from pf.iter_batches(row_groups=groups, columns=columns)
    except JobRuntimeError:  # the key agent's refusal, through pyarrow's KMS client
        raise
    except (OSError, ValueError):
        # The file's footer was verified: a module failing authentication was altered.
        # (pyarrow's messages can quote bytes of the file: none is kept.)
        raise FileCorruptError(
            f"{dataset}: file {path} failed authentication: a part of it was altered"
        ) from None
