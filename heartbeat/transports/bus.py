"""Heartbeats over Azure Service Bus, behind the same interface as HTTP.

Each signed heartbeat goes to the ``heartbeats`` queue (the run id as correlation
id); the answer is whatever cancel order waits on this run's cancel queue. A
broken connection is a transport error: the sidecar keeps its backlog and the
transport reconnects on the next send.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from heartbeat.transports.servicebus import ServiceBusTransport
from jobruntime.controlplane.pod import HeartbeatAck
from jobruntime.errors import JobRuntimeError

if TYPE_CHECKING:
    from heartbeat.sidecar import SignedHeartbeat


class ServiceBusHeartbeats:
    def __init__(self, connection_string: str, run_id: str, cancel_wait: float = 1.0) -> None:
        self._bus = ServiceBusTransport(connection_string, run_id)
        self._cancel_wait = cancel_wait

    def send(self, signed: SignedHeartbeat) -> HeartbeatAck:
        body = json.dumps(signed.to_json(), separators=(",", ":")).encode()
        self._bus.send(body)  # a failure keeps it in the backlog
        try:
            order = self._bus.poll_cancel(self._cancel_wait)
        except JobRuntimeError:
            order = None  # the heartbeat is out; the cancel queue is read again next time
        envelope = order.get("order") if order else None
        return HeartbeatAck(
            accepted=True,
            cancel=order is not None,
            reason=str(order.get("reason")) if order else None,
            order=envelope if isinstance(envelope, dict) else None,
        )

    def close(self) -> None:
        self._bus.close()
