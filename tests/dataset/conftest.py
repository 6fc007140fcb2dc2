"""Fixtures for encrypted datasets: a real key agent with in-memory keys, table builders.

The agent is the real server on a socket in /dev/shm; its key source is the
in-memory development source (no KMS), which is all the data source ever sees.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource

DATASETS = ("sales", "other", "empty", "nested")


@dataclass
class Agent:
    socket: Path
    keys: dict[str, bytes]

    def key_id(self, dataset: str) -> str:
        return f"org-a/{dataset}"

    def reader(self, spark: Any, dataset: str, uri: str) -> Any:
        return (
            spark.read.format("confidential")
            .option("dataset", dataset)
            .option("keyId", self.key_id(dataset))
            .option("keyAgentSocket", str(self.socket))
            .load(uri)
        )

    def write(self, df: Any, dataset: str, uri: str, mode: str = "overwrite") -> None:
        (
            df.write.format("confidential")
            .option("dataset", dataset)
            .option("keyId", self.key_id(dataset))
            .option("keyAgentSocket", str(self.socket))
            .mode(mode)
            .save(uri)
        )


@pytest.fixture
def agent() -> Iterator[Agent]:
    keys = {name: os.urandom(32) for name in DATASETS}
    directory = Path(tempfile.mkdtemp(prefix="agent-", dir="/dev/shm"))
    server = KeyAgentServer(directory / "agent.sock", StaticKeySource(keys)).start()
    try:
        yield Agent(server.socket_path, keys)
    finally:
        server.close()
        directory.rmdir()


SENTINEL = "SENTINEL-7f3a9c"


def sales_table(rows: int = 1000) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "region": pa.array([("north", "south", None)[i % 3] for i in range(rows)]),
            "amount": pa.array([Decimal(i) / 100 for i in range(rows)], pa.decimal128(12, 2)),
            "secret": pa.array([SENTINEL if i == 7 else f"s{i}" for i in range(rows)]),
        }
    )
