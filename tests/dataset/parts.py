"""Datasets written by the Python writer's own calls (no Spark), and where a part's bytes are.

``write_version`` stages each part and commits, as the ``confidential`` data source's
writer does, with a real key agent (tests/dataset/conftest.py) holding the keys and
recording versions as the control plane would. ``column_chunks`` finds a column's chunk
in each row group of a part, from its footer decrypted with the agent's key: what an
attacker replaying genuine ciphertext inside a file needs to know.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobruntime.dataset import files, pme, versions
from jobruntime.dataset.manifest import Manifest, WholeFileEntry, seal
from jobruntime.datasource.options import AgentRegistry
from jobruntime.keyagent.client import AgentKeyOps, KeyAgentClient
from jobruntime.storage.local import LocalStorage
from tests.dataset.conftest import Agent, key_id, sales_table

ROWS = 300  # per part, by default


def agent_ops(agent: Agent, dataset: str = "sales") -> AgentKeyOps:
    return AgentKeyOps(KeyAgentClient(agent.socket), dataset, key_id(dataset))


def write_version(
    agent: Agent,
    uri: str,
    parts: int = 3,
    dataset: str = "sales",
    table: pa.Table | None = None,
) -> Manifest:
    """One new version of ``parts`` parts holding the same rows (so equal sizes)."""
    ops = agent_ops(agent, dataset)
    rows = sales_table(ROWS) if table is None else table
    storage = LocalStorage(Path(uri))
    write_id = versions.new_write_id()
    staged = [
        (
            p,
            files.write(
                storage,
                versions.staging_path(write_id, p, 0),
                rows.to_batches(),
                rows.schema,
                ops,
            ),
        )
        for p in range(parts)
    ]
    manifest = versions.commit(
        storage, uri, ops, rows.schema, staged, AgentRegistry(ops.client, dataset)
    )
    versions.abort(storage, write_id)
    return manifest


def column_chunks(data: bytes, ops: AgentKeyOps, column: int = 0) -> list[tuple[int, int]]:
    """(offset, length) of ``column``'s chunk in each row group of a part."""
    metadata = pq.ParquetFile(
        pa.BufferReader(data), decryption_properties=pme.decryption_properties(ops)
    ).metadata
    chunks = []
    for i in range(metadata.num_row_groups):
        chunk = metadata.row_group(i).column(column)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else None
        start = chunk.data_page_offset if start is None else start
        chunks.append((start, chunk.total_compressed_size))
    return chunks


def republish_as_schema_1(agent: Agent, uri: str, dataset: str = "sales") -> Manifest:
    """The latest version's parts, published again as the next version under a schema-1
    manifest (each file's whole SHA-256), as releases before footer digests wrote them."""
    ops = agent_ops(agent, dataset)
    storage = LocalStorage(Path(uri))
    registry = AgentRegistry(ops.client, dataset)
    latest = versions.open_latest(storage, uri, ops, registry)
    assert latest is not None
    version = latest.version + 1
    directory = f"v{version:06d}-{secrets.token_hex(4)}"
    entries = []
    for f in latest.files:
        data = storage.read(f.path)
        target = f"{directory}/{f.path.split('/')[1]}"
        storage.write(target, data)
        entries.append(
            WholeFileEntry(
                path=target,
                size=f.size,
                sha256=hashlib.sha256(data).hexdigest(),
                rows=f.rows,
                row_groups=f.row_groups,
            )
        )
    draft = latest.model_copy(
        update={
            "schema_version": 1,
            "version": version,
            "directory": directory,
            "previous": latest.digest,
            "files": entries,
        }
    )
    manifest = seal(draft, ops)
    assert storage.create(versions.manifest_path(version), manifest.model_dump_json().encode())
    registry.record(version, manifest.digest)
    return manifest
