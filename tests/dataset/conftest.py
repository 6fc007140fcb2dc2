"""Fixtures for encrypted datasets: a real key agent with in-memory keys, table builders.

The agent is the real server on a socket in /dev/shm; its key source is the
in-memory development source (no KMS), which is all the data source ever sees.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource

DATASETS = ("sales", "other", "empty", "nested")


def key_id(dataset: str) -> str:
    return f"org-a/{dataset}"


@dataclass
class Agent:
    socket: Path
    keys: dict[str, bytes]

    def key_id(self, dataset: str) -> str:
        return key_id(dataset)

    def reader(self, spark: Any, dataset: str, uri: str) -> Any:
        return (
            spark.read.format("confidential")
            .option("dataset", dataset)
            .option("keyId", self.key_id(dataset))
            .option("keyAgentSocket", str(self.socket))
            .load(uri)
        )

    def write(
        self, df: Any, dataset: str, uri: str, mode: str = "overwrite", key: str | None = None
    ) -> None:
        (
            df.write.format("confidential")
            .option("dataset", dataset)
            .option("keyId", key or self.key_id(dataset))
            .option("keyAgentSocket", str(self.socket))
            .mode(mode)
            .save(uri)
        )


AgentFactory = Callable[..., Agent]


@pytest.fixture
def agents() -> Iterator[AgentFactory]:
    """Real key agents on sockets in /dev/shm, granting as a spec would (key ids pinned).

    ``make(writable=...)`` narrows the outputs; every agent is closed after the test.
    """
    started: list[tuple[KeyAgentServer, Path]] = []

    def make(**grants: Any) -> Agent:
        keys = {name: os.urandom(32) for name in DATASETS}
        source = StaticKeySource(keys, key_ids={n: key_id(n) for n in DATASETS}, **grants)
        directory = Path(tempfile.mkdtemp(prefix="agent-", dir="/dev/shm"))
        server = KeyAgentServer(directory / "agent.sock", source).start()
        started.append((server, directory))
        return Agent(server.socket_path, keys)

    yield make
    for server, directory in started:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def agent(agents: AgentFactory) -> Agent:
    """An agent that grants every test dataset for reading and writing."""
    return agents()


class Relay:
    """Between readers and the agent, keeping every byte each side sent: the wire as seen
    by anyone on the socket. Readers connect to :attr:`path` instead of the agent."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.with_name("relay.sock")
        self.answers = bytearray()
        self.requests = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as agent:
            agent.connect(str(self.target))
            back = threading.Thread(target=self._pump, args=(agent, client, self.answers))
            back.start()
            self._pump(client, agent, self.requests)
            back.join(30)

    def _pump(self, src: socket.socket, dst: socket.socket, sink: bytearray) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    sink.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        self.path.unlink(missing_ok=True)


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
