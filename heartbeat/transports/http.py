"""Heartbeats over the control plane's HTTP API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobruntime.controlplane.pod import HeartbeatAck, PodClient

if TYPE_CHECKING:
    from heartbeat.sidecar import SignedHeartbeat


class HttpTransport:
    def __init__(self, client: PodClient, run_id: str) -> None:
        self._client, self._run_id = client, run_id

    def send(self, signed: SignedHeartbeat) -> HeartbeatAck:
        return self._client.heartbeat(self._run_id, signed.session, signed.jws)

    def close(self) -> None:
        self._client.close()
