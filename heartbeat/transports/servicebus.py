"""The sidecar's end of the Service Bus heartbeat channel: heartbeats out, cancel orders in.

Cancel orders for the run arrive on ``cancel-<run_id>``, received with peek-lock: a
well-formed order for this run is completed and returned, anything else is
abandoned (Service Bus dead-letters it after its max delivery count). The order
inside is the control plane's signed one; the sidecar verifies it before acting.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage

from jobruntime.servicebus import (
    CONTENT_TYPE,
    DEFAULT_TIMEOUT,
    MAX_CANCEL_BYTES,
    Connection,
    TransportError,
    check_run_id,
    message_body,
)

__all__ = ["ServiceBusTransport", "TransportError"]

log = logging.getLogger("jobruntime.heartbeat.servicebus")


class ServiceBusTransport:
    """The sidecar's end: heartbeats out, cancel orders in."""

    def __init__(
        self,
        connection_string: str,
        run_id: str,
        heartbeat_queue: str = "heartbeats",
        cancel_queue_prefix: str = "cancel-",
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.run_id = check_run_id(run_id)
        self.heartbeat_queue = heartbeat_queue
        self.cancel_queue = f"{cancel_queue_prefix}{run_id}"
        self._conn = Connection(connection_string, timeout)

    def _message(self, body: bytes) -> ServiceBusMessage:
        return ServiceBusMessage(
            body,
            correlation_id=self.run_id,
            application_properties={"run_id": self.run_id},
            content_type=CONTENT_TYPE,
        )

    def send(self, body: bytes) -> None:
        """One heartbeat to the heartbeat queue."""
        self._conn.send(self.heartbeat_queue, [self._message(body)])

    def send_batch(self, bodies: list[bytes]) -> None:
        """A backlog, oldest first, in as few ``ServiceBusMessageBatch`` sends as fit."""
        self._conn.send(self.heartbeat_queue, [self._message(b) for b in bodies])

    def poll_cancel(self, max_wait: float) -> dict[str, Any] | None:
        """A cancel order for this run, if one arrives within ``max_wait`` seconds.

        The order is completed before it is returned. A message that is not a JSON
        object with this run's ``run_id`` is abandoned and None is returned.
        """
        messages = self._conn.receive(self.cancel_queue, 1, max_wait)
        if not messages:
            return None
        message = messages[0]
        order = self._parse(message)
        self._conn.settle(self.cancel_queue, message, complete=order is not None)
        return order

    def _parse(self, message: ServiceBusReceivedMessage) -> dict[str, Any] | None:
        body = message_body(message)
        try:
            order = json.loads(body) if len(body) <= MAX_CANCEL_BYTES else None
        except (ValueError, RecursionError):  # RecursionError: nested past the recursion limit
            order = None
        if not isinstance(order, dict) or order.get("run_id") != self.run_id:
            log.warning(
                "abandoning a malformed cancel order on %s (sequence %s)",
                self.cancel_queue,
                message.sequence_number,
            )
            return None
        if not isinstance(order.get("reason", ""), str):
            return None
        return order

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ServiceBusTransport:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
