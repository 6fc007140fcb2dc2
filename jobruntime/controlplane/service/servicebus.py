"""The control plane's end of the Service Bus heartbeat channel: heartbeats in, orders out.

``ServiceBusHeartbeatConsumer`` peek-locks heartbeats from the queue, completes what
the handler accepted and abandons what it failed on; ``consume`` runs it on a
thread, passing each heartbeat through the same ``heartbeats.accept`` as HTTP, and
answers a cancelled run's sidecar with the control plane's signed cancel order.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from azure.servicebus import ServiceBusMessage

from jobruntime.controlplane.api import SignedHeartbeat
from jobruntime.controlplane.service import heartbeats
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.errors import JobRuntimeError
from jobruntime.servicebus import (
    CONTENT_TYPE,
    DEFAULT_TIMEOUT,
    Connection,
    check_run_id,
    message_body,
)

log = logging.getLogger("jobruntime.controlplane.servicebus")


class ServiceBusHeartbeatConsumer:
    """The control plane's end: heartbeats in, cancel orders out."""

    def __init__(
        self,
        connection_string: str,
        handle: Callable[[bytes], bool],
        queue: str = "heartbeats",
        *,
        cancel_queue_prefix: str = "cancel-",
        max_batch: int = 50,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.queue = queue
        self.cancel_queue_prefix = cancel_queue_prefix
        self._handle = handle
        self._max_batch = max_batch
        self._conn = Connection(connection_string, timeout)

    def poll(self, max_wait: float) -> int:
        """Receive up to ``max_batch`` heartbeats; the number completed.

        ``handle(body)`` returning True completes the message; returning False or
        raising abandons it, so it is redelivered (with its delivery count up).
        """
        completed = 0
        for message in self._conn.receive(self.queue, self._max_batch, max_wait):
            try:
                accepted = bool(self._handle(message_body(message)))
            except Exception:
                log.exception("heartbeat handler failed on sequence %s", message.sequence_number)
                accepted = False
            self._conn.settle(self.queue, message, complete=accepted)
            completed += accepted
        return completed

    def send_cancel(self, run_id: str, reason: str, order: dict[str, Any] | None = None) -> None:
        """Order the run's sidecar to cancel: ``{"run_id", "reason", "order"}``.

        ``order`` is the control plane's signed cancel order: the sidecar acts on it
        alone, so a message anyone put on the queue stops nothing.
        """
        queue = f"{self.cancel_queue_prefix}{check_run_id(run_id)}"
        fields: dict[str, Any] = {"run_id": run_id, "reason": reason}
        if order is not None:
            fields["order"] = order
        body = json.dumps(fields, separators=(",", ":")).encode()
        message = ServiceBusMessage(
            body,
            correlation_id=run_id,
            application_properties={"run_id": run_id},
            content_type=CONTENT_TYPE,
        )
        self._conn.send(queue, [message])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ServiceBusHeartbeatConsumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def consume(cp: ControlPlane, connection_string: str, stop: threading.Event) -> threading.Thread:
    """Heartbeats from the Service Bus queue, through the same checks as HTTP.

    Refused heartbeats are completed (the refusal is audited; redelivering them
    would not make them valid); a cancelled run's sidecar gets a signed cancel order.
    """
    cancels: dict[str, tuple[str, dict[str, Any] | None]] = {}

    def handle(body: bytes) -> bool:
        try:
            ack = heartbeats.accept(cp, SignedHeartbeat.model_validate_json(body), "servicebus")
        except (ServiceError, ValueError):
            return True
        if ack.cancel and ack.run_id:
            cancels[ack.run_id] = (ack.reason or "cancelled", ack.order)  # sent after the receive
        return True

    consumer = ServiceBusHeartbeatConsumer(connection_string, handle)

    def loop() -> None:
        while not stop.is_set():
            try:
                consumer.poll(1.0)
                while cancels:
                    run_id, (reason, order) = cancels.popitem()
                    consumer.send_cancel(run_id, reason, order)
            except JobRuntimeError:
                stop.wait(1.0)  # the broker is away: try again, never give up
        consumer.close()

    thread = threading.Thread(target=loop, name="servicebus-heartbeats", daemon=True)
    thread.start()
    return thread
