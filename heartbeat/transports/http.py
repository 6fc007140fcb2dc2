"""Heartbeats over the control plane's HTTP API."""

from __future__ import annotations

from jobruntime.controlplane.api import HeartbeatAck, SignedHeartbeat
from jobruntime.controlplane.client import ControlPlaneClient


class HttpTransport:
    def __init__(self, client: ControlPlaneClient, run_id: str) -> None:
        self._client, self._run_id = client, run_id

    def send(self, signed: SignedHeartbeat) -> HeartbeatAck:
        return self._client.heartbeat(self._run_id, signed)

    def close(self) -> None:
        self._client.close()
