"""The control plane's version record, reached directly (owners' tools)."""

from __future__ import annotations

from dataclasses import dataclass

from jobruntime.controlplane.api import DatasetRef, PublishVersion
from jobruntime.controlplane.client import ControlPlaneClient


@dataclass(frozen=True)
class ControlPlaneRegistry:
    client: ControlPlaneClient
    uri: str
    key_id: str

    def latest(self) -> tuple[int, str] | None:
        found = self.client.latest_version(DatasetRef(uri=self.uri))
        return (found.version, found.manifest_digest) if found else None

    def record(self, version: int, digest: str) -> None:
        self.client.publish_version(
            PublishVersion(
                uri=self.uri, key_id=self.key_id, version=version, manifest_digest=digest
            )
        )
