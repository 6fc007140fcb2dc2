"""Azure Service Bus plumbing shared by both ends of the heartbeat channel.

The sidecar's end is ``heartbeat.transports.servicebus.ServiceBusTransport``; the
control plane's is ``jobruntime.controlplane.service.servicebus``. Heartbeats go to
one queue (default ``heartbeats``) with the run id as correlation id and as the
application property ``run_id``; cancel orders for a run go to ``cancel-<run_id>``.

Both ends survive a broker restart or a dropped connection: a failed operation drops
the client, sender and receiver and retries once with new ones if time is left;
otherwise the next call builds them. No call blocks much longer than ``timeout``
(plus ``max_wait`` for receives), even against a peer that never answers: SDK
calls run on a worker thread (see ``Worker``). Error messages never carry the
connection string's key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
)
from azure.servicebus.exceptions import MessageSizeExceededError

from jobruntime.errors import JobRuntimeError

log = logging.getLogger("jobruntime.servicebus")
T = TypeVar("T")

CONTENT_TYPE = "application/json"
DEFAULT_TIMEOUT = 10.0
MAX_CANCEL_BYTES = 64 * 1024


class TransportError(JobRuntimeError):
    """A heartbeat or cancel order could not be sent or received."""

    code = "heartbeat.transport"
    exit_code = 28


def _secret_of(connection_string: str) -> str | None:
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() in ("sharedaccesskey", "sharedaccesssignature") and value:
            return value
    return None


def _describe(exc: BaseException, secret: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        text = text.replace(secret, "***")
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


class Worker:
    """One daemon thread that runs the SDK's blocking calls, so a caller can stop waiting.

    azure-servicebus 7.15 negotiates SASL on a socket switched to blocking mode with no
    timeout: a peer that accepts TCP and never answers (a wedged broker, a black-holing
    middlebox) hangs the call forever. The caller waits on a future with a deadline
    instead, and on expiry shuts the sockets down, which unblocks this thread.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._loop, name="servicebus-transport", daemon=True).start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return future

    def stop(self) -> None:
        self._jobs.put(None)


def _abort_sockets(handlers: list[Any]) -> None:
    """Shut down the sockets under SDK senders/receivers (private attributes, best effort)."""
    for handler in handlers:
        amqp_client = getattr(handler, "_handler", None)
        connection = getattr(amqp_client, "_connection", None)
        transport = getattr(connection, "_transport", None)
        sock = getattr(transport, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Connection:
    """One ServiceBusClient plus its cached senders and receivers, rebuilt on failure.

    The SDK's own retries are off (``retry_total=0``): a call retries here, at most
    once and only within its time budget, with a fresh client, which is also how a
    restarted broker is reconnected to.
    """

    def __init__(self, connection_string: str, timeout: float) -> None:
        if not connection_string.strip():
            raise TransportError("service bus connection string is empty")
        self._connection_string = connection_string
        self._secret = _secret_of(connection_string)
        self.timeout = timeout
        self._client: ServiceBusClient | None = None
        self._senders: dict[str, ServiceBusSender] = {}
        self._receivers: dict[str, ServiceBusReceiver] = {}
        self._worker: Worker | None = None
        self._closed = False
        self.client()  # a malformed connection string fails here, not on first use

    # --- SDK objects -----------------------------------------------------------------

    def client(self) -> ServiceBusClient:
        if self._closed:
            raise TransportError("service bus transport is closed")
        if self._client is None:
            try:
                self._client = ServiceBusClient.from_connection_string(
                    self._connection_string,
                    retry_total=0,
                    # The SDK's defaults (60 s CBS and operation timeouts) exceed our budget.
                    auth_timeout=self.timeout,
                    timeout=self.timeout,
                )
            except ValueError as exc:
                raise TransportError(
                    f"service bus connection string is malformed: {_describe(exc, self._secret)}"
                ) from None
        return self._client

    def sender(self, queue_name: str) -> ServiceBusSender:
        sender = self._senders.get(queue_name)
        if sender is None:
            sender = self._senders[queue_name] = self.client().get_queue_sender(queue_name)
        return sender

    def receiver(self, queue_name: str) -> ServiceBusReceiver:
        receiver = self._receivers.get(queue_name)
        if receiver is None:
            receiver = self._receivers[queue_name] = self.client().get_queue_receiver(
                queue_name, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=0
            )
        return receiver

    def _take_handlers(self) -> list[Any]:
        handlers: list[Any] = [*self._senders.values(), *self._receivers.values()]
        if self._client is not None:
            handlers.append(self._client)
        self._senders.clear()
        self._receivers.clear()
        self._client = None
        return handlers

    def reset(self) -> None:
        """Close and forget every SDK object; the next call builds new ones."""
        _close_quietly(self._take_handlers())

    def close(self) -> None:
        self.reset()
        self._closed = True
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    # --- running a call with a deadline ----------------------------------------------

    def _run(self, what: str, fn: Callable[[], T], budget: float) -> T:
        if self._worker is None:
            self._worker = Worker()
        future = self._worker.submit(fn)
        try:
            return future.result(timeout=max(budget, 0.1) + 0.5)
        except FutureTimeout:
            # The worker is stuck in the SDK: unblock it, let it close what it holds,
            # and use a new worker and new SDK objects from now on.
            stuck, handlers = self._worker, self._take_handlers()
            self._worker = None
            _abort_sockets(handlers)
            stuck.submit(lambda: _close_quietly(handlers))
            stuck.stop()
            raise TransportError(
                f"service bus {what} got no answer within {budget:.0f} s"
            ) from None

    def send(self, queue_name: str, messages: list[ServiceBusMessage]) -> None:
        """Send in as few batches as fit; one reconnect-and-retry within the time budget."""
        if not messages:
            return
        what = f"send to queue {queue_name!r}"
        deadline = time.monotonic() + self.timeout
        for attempt in (1, 2):
            try:
                self._run(
                    what,
                    lambda: self._send_once(queue_name, messages, deadline),
                    self._left(deadline),
                )
                return
            except TransportError:
                raise
            except Exception as exc:
                self.reset()
                if attempt == 2 or self._left(deadline) < 1.0:
                    raise self._error(what, exc) from None
                log.info("service bus %s failed (%s); reconnecting", what, type(exc).__name__)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _left(deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.0)

    def _send_once(
        self, queue_name: str, messages: list[ServiceBusMessage], deadline: float
    ) -> None:
        sender = self.sender(queue_name)

        def left() -> float:
            remaining = self._left(deadline)
            if remaining <= 0:
                raise TimeoutError(f"no answer within {self.timeout:.0f} s")
            return remaining

        if len(messages) == 1:
            sender.send_messages(messages[0], timeout=left())
            return
        batch: ServiceBusMessageBatch = sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
            except MessageSizeExceededError:
                if len(batch) == 0:
                    raise TransportError(
                        f"service bus message for queue {queue_name!r} is larger than"
                        " the broker accepts"
                    ) from None
                sender.send_messages(batch, timeout=left())
                batch = sender.create_message_batch()
                batch.add_message(message)
        if len(batch):
            sender.send_messages(batch, timeout=left())

    def receive(
        self, queue_name: str, max_count: int, max_wait: float
    ) -> list[ServiceBusReceivedMessage]:
        what = f"receive from queue {queue_name!r}"
        wait = max(max_wait, 0.1)

        def once() -> list[ServiceBusReceivedMessage]:
            receiver = self.receiver(queue_name)
            return list(receiver.receive_messages(max_message_count=max_count, max_wait_time=wait))

        for attempt in (1, 2):
            started = time.monotonic()
            try:
                return self._run(what, once, wait + self.timeout)
            except TransportError:
                raise
            except Exception as exc:
                self.reset()
                # Retry at once only a quick failure (a connection that died while idle).
                if attempt == 2 or time.monotonic() - started > 2.0:
                    raise self._error(what, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def settle(self, queue_name: str, message: ServiceBusReceivedMessage, complete: bool) -> None:
        action = "complete" if complete else "abandon"
        what = f"{action} on queue {queue_name!r}"

        def once() -> None:
            receiver = self.receiver(queue_name)
            if complete:
                receiver.complete_message(message)
            else:
                receiver.abandon_message(message)

        try:
            self._run(what, once, self.timeout)
        except TransportError:
            raise
        except Exception as exc:
            # The lock lapses and the broker redelivers the message: nothing is lost.
            self.reset()
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: BaseException) -> TransportError:
        return TransportError(f"service bus {what} failed: {_describe(exc, self._secret)}")


def _close_quietly(handlers: list[Any]) -> None:
    for handler in handlers:
        with contextlib.suppress(Exception):
            handler.close()


def message_body(message: ServiceBusReceivedMessage) -> bytes:
    body: Any = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    try:
        return b"".join(bytes(part) for part in body)
    except TypeError:
        return json.dumps(body).encode()


def check_run_id(run_id: str) -> str:
    if not run_id or len(run_id) > 200 or any(c.isspace() or c in "/\\" for c in run_id):
        raise TransportError(f"run id {run_id[:64]!r} cannot name a service bus queue")
    return run_id
