"""What a confidential read or write is told, and where its keys and versions come from.

Options are plain strings in the query plan, so they hold names and paths only:
the key comes from the key agent's socket, never from an option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobruntime.dataset.versions import VersionRegistry
from jobruntime.errors import ConfigError
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.storage.base import Storage
from jobruntime.storage.uri import open_storage

SOCKET_ENV = "JOB_KEYAGENT_SOCKET"


@dataclass(frozen=True)
class Options:
    uri: str
    dataset: str
    key_id: str | None
    socket: str

    @classmethod
    def parse(cls, options: Any) -> Options:
        get = {str(k).lower(): str(v) for k, v in dict(options).items()}.get
        uri = get("path")
        dataset = get("dataset")
        socket = get("keyagentsocket") or os.environ.get(SOCKET_ENV)
        if not uri or not dataset:
            raise ConfigError("the confidential source needs .option('dataset', NAME) and a path")
        if not socket:
            raise ConfigError(f"no key agent: set .option('keyAgentSocket', PATH) or ${SOCKET_ENV}")
        return cls(uri=uri, dataset=dataset, key_id=get("keyid"), socket=socket)

    def agent(self) -> KeyAgentClient:
        return KeyAgentClient(Path(self.socket))

    def storage(self) -> Storage:
        return open_storage(self.uri)

    def key(self) -> bytes:
        return self.agent().get_key(self.dataset)

    def registry(self) -> VersionRegistry:
        return AgentRegistry(self.agent(), self.dataset)


@dataclass(frozen=True)
class AgentRegistry:
    """The control plane's version record, reached through the key agent."""

    agent: KeyAgentClient
    dataset: str

    def latest(self) -> tuple[int, str] | None:
        return self.agent.latest_version(self.dataset)

    def record(self, version: int, digest: str) -> None:
        self.agent.record_version(self.dataset, version, digest)
