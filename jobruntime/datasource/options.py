"""What a confidential read or write is told, and where its key operations and versions are.

Options are plain strings in the query plan, so they hold names and paths only:
wrapping, unwrapping and manifest MACs are the key agent's, over its socket; no key
is ever in an option, or in this process.

Which agent: the one of the pod this process runs in. The query plan carries the
driver's socket path (``keyAgentSocket``, set by ``ctx``) to every executor, but an
executor pod has its own attested agent, named by its container's
``$JOB_KEYAGENT_SOCKET``; so the variable, where set, wins over the option when a
key operation is made (:meth:`Options.agent`). On Kubernetes both are the same path,
each pod's own; off Kubernetes (the development pod runner's standalone workers)
they differ, and the option alone would send every executor to the driver's agent.
The driver process itself removes the variable (``jobruntime.job.driver``), so there
the option decides, as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobruntime.dataset.versions import VersionRegistry
from jobruntime.errors import ConfigError
from jobruntime.keyagent.client import AgentKeyOps, KeyAgentClient
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
        """This pod's key agent: ``$JOB_KEYAGENT_SOCKET`` where the pod sets it, else the option.

        Resolved here, in the process making the key operation, not when the options
        were parsed: a reader or writer parsed on the driver is unpickled on executors.
        """
        return KeyAgentClient(Path(os.environ.get(SOCKET_ENV) or self.socket))

    def storage(self) -> Storage:
        return open_storage(self.uri)

    def ops(self, key_id: str) -> AgentKeyOps:
        """The dataset's master key, as operations the key agent performs: never the key."""
        return AgentKeyOps(self.agent(), self.dataset, key_id)

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
