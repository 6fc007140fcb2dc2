"""Fixtures for the key agent: real sockets under /dev/shm (tmpfs), stopped after each test."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import Grant, KeySource

SHM = Path("/dev/shm")


class CountingSource:
    """A key source that counts releases, can be slow, and can refuse.

    Every dataset it names is granted writable; ``key_ids`` pins key ids as a spec would.
    """

    def __init__(
        self,
        keys: dict[str, bytes],
        *,
        allowed: set[str] | None = None,
        key_ids: dict[str, str] | None = None,
        delay: float = 0.0,
        error: Exception | None = None,
    ) -> None:
        self.keys = keys
        names = frozenset(keys if allowed is None else allowed)
        ids = key_ids or {}
        self.grants = {n: Grant(key_id=ids.get(n), writable=True) for n in names}
        self.delay = delay
        self.error = error
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def release(self, dataset: str) -> bytes:
        with self._lock:
            self.calls.append(dataset)
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.keys[dataset]


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh directory on tmpfs, so the real memory-filesystem check passes."""
    if not SHM.is_dir():
        pytest.skip("no /dev/shm on this machine")
    path = Path(tempfile.mkdtemp(prefix="keyagent-test-", dir=SHM))
    yield path
    shutil.rmtree(path, ignore_errors=True)


AgentFactory = Callable[..., KeyAgentServer]


@pytest.fixture
def agent(shm_dir: Path) -> Iterator[AgentFactory]:
    """Start agents on sockets in ``shm_dir``; every one is closed after the test."""
    started: list[KeyAgentServer] = []

    def make(source: KeySource, name: str = "agent.sock", **kwargs: Any) -> KeyAgentServer:
        server = KeyAgentServer(shm_dir / name, source, **kwargs)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.close()


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("keyagent")]
        if not alive:
            return
        time.sleep(0.01)
    pytest.fail(f"key agent threads still running: {alive}")
