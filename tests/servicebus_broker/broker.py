"""A minimal AMQP 1.0 broker that speaks enough Service Bus for ``azure-servicebus``.

What it does (and nothing more):

- plain AMQP on 127.0.0.1 (what the SDK uses with ``UseDevelopmentEmulator=true``),
  SASL ANONYMOUS (the SDK authenticates with CBS, not SASL);
- ``$cbs``: answers every ``put-token`` with ``status-code`` 202;
- queues, created on first use (names are case-insensitive, like Service Bus);
  sends are settled ``accepted``; a batch envelope (format 0x80013700) is split
  into its messages (see ``codec``);
- receiver links in peek-lock (settled by disposition) or receive-and-delete
  (sender-settle-mode ``settled``) mode; deliveries carry a lock token as their
  delivery tag (16 bytes, ``uuid.bytes_le``: what the SDK reads back). The broker
  keeps the token itself: proton's Python binding cannot read back a binary tag;
- the receiver's outcome is applied (accepted: gone; modified/abandon: back in the
  queue, delivery count + 1; released: back, count unchanged; rejected: dead-letter
  queue ``<queue>/$deadletterqueue``) and echoed in the broker's settling
  disposition, which the SDK waits for in peek-lock mode;
- locks expire after ``lock_duration`` (delivery count + 1); after
  ``max_delivery_count`` deliveries a message is dead-lettered;
- ``<queue>/$management``: ``renew-lock``, ``update-disposition``
  (complete/abandon/dead-letter by lock token) and ``peek-message``; anything else
  gets ``statusCode`` 501 with ``errorCondition`` ``amqp:not-implemented``.

State is in memory: a restart empties every queue.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Data,
    Delivery,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    Receiver,
    Sender,
    symbol,
    timestamp,
)
from proton.reactor import Container

from tests.servicebus_broker.codec import CodecError, StoredMessage, split_sections, unpack_batch

log = logging.getLogger("servicebus_broker")

CBS_NODE = "$cbs"
MGMT_SUFFIX = "/$management"
DLQ_SUFFIX = "/$deadletterqueue"
VENDOR = "com.microsoft"
MAX_MESSAGE_SIZE = 1024 * 1024
RECEIVE_CREDIT = 500
LOCK_LOST = f"{VENDOR}:message-lock-lost"
NOT_IMPLEMENTED = "amqp:not-implemented"


def entity_name(address: str | None) -> str:
    """``amqps://host:port/Queue/`` and ``queue`` name the same entity: ``queue``."""
    addr = address or ""
    if "://" in addr:
        rest = addr.split("://", 1)[1]
        addr = rest.split("/", 1)[1] if "/" in rest else ""
    return addr.strip("/").lower()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Lock:
    token: uuid.UUID
    queue: QueueState
    message: StoredMessage
    expires_ms: int
    delivery: Delivery | None = None


@dataclass
class QueueState:
    name: str
    ready: list[StoredMessage] = field(default_factory=list)  # by sequence number
    locks: dict[uuid.UUID, Lock] = field(default_factory=dict)
    consumers: list[Sender] = field(default_factory=list)

    def put_back(self, message: StoredMessage) -> None:
        bisect.insort(self.ready, message, key=lambda m: m.sequence_number)


def _guarded(cls: type[Handler]) -> type[Handler]:
    """Log, rather than die on, a bug in one event handler: one bad frame must not
    take down the broker (and every other test's connection) with it."""

    def wrap(name: str, method: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(method)
        def guarded(self: Handler, event: Event) -> None:
            try:
                method(self, event)
            except Exception:
                log.exception("error while handling %s", name)

        return guarded

    for name, method in list(vars(cls).items()):
        if name.startswith("on_") and callable(method):
            setattr(cls, name, wrap(name, method))
    return cls


@_guarded
class Broker(Handler):
    """The proton handler: every connection, session, link and delivery event."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        port_file: Path | None = None,
        lock_duration: float = 30.0,
        max_delivery_count: int = 10,
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.port_file = port_file
        self.lock_duration_ms = int(lock_duration * 1000)
        self.max_delivery_count = max_delivery_count
        self.queues: dict[str, QueueState] = {}
        self.locks: dict[uuid.UUID, Lock] = {}
        self.sequence = 0
        self.tokens_put = 0

    # --- start-up and the lock clock -------------------------------------------------

    def on_reactor_init(self, event: Event) -> None:
        container: Container = event.container
        acceptor = container.acceptor(self.host, str(self.port))
        self.port = int(acceptor._selectable.getsockname()[1])
        log.info("listening on %s:%d", self.host, self.port)
        if self.port_file is not None:
            tmp = self.port_file.with_name(self.port_file.name + ".tmp")
            tmp.write_text(f"{self.port}\n")
            os.replace(tmp, self.port_file)
        container.schedule(0.25, self)

    def on_timer_task(self, event: Event) -> None:
        now = now_ms()
        for lock in [lk for lk in self.locks.values() if lk.expires_ms <= now]:
            log.info("lock %s expired on %s", lock.token, lock.queue.name)
            self._unlock(lock, count_delivery=True)
        for queue in list(self.queues.values()):
            self._pump(queue)
        event.container.schedule(0.25, self)

    # --- connection, session and link life cycle -------------------------------------

    def on_connection_bound(self, event: Event) -> None:
        assert event.transport is not None
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")
        sasl.allow_insecure_mechs = True

    def on_connection_remote_open(self, event: Event) -> None:
        conn = event.connection
        assert conn is not None
        if conn.state & Endpoint.LOCAL_UNINIT:
            conn.container = "servicebus-test-broker"
            conn.open()

    def on_session_remote_open(self, event: Event) -> None:
        session = event.session
        assert session is not None
        if session.state & Endpoint.LOCAL_UNINIT:
            session.open()

    def on_link_remote_open(self, event: Event) -> None:
        link = event.link
        assert link is not None
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if isinstance(link, Sender):
            self._open_outgoing(link)
        else:
            self._open_incoming(link)

    def _open_outgoing(self, link: Sender) -> None:
        address = entity_name(link.remote_source.address)
        link.sb_address = address
        link.sb_pending = []
        if address == CBS_NODE or address.endswith(MGMT_SUFFIX):
            link.sb_kind = "reply"
            link.open()
            return
        if not address:
            self._refuse(link, "amqp:invalid-field", "a receiver link needs a source address")
            return
        link.sb_kind = "consumer"
        queue = self._queue(address)
        link.open()
        queue.consumers.append(link)
        mode = "receive-and-delete" if self._pre_settled(link) else "peek-lock"
        log.info("consumer attached to %s (%s)", address, mode)
        self._pump(queue)

    def _open_incoming(self, link: Receiver) -> None:
        address = entity_name(link.remote_target.address)
        if not address:
            self._refuse(link, "amqp:invalid-field", "a sender link needs a target address")
            return
        link.sb_address = address
        if address == CBS_NODE or address.endswith(MGMT_SUFFIX):
            link.sb_kind = "request"
        else:
            link.sb_kind = "producer"
            self._queue(address)
            link.max_message_size = MAX_MESSAGE_SIZE
        link.open()
        link.flow(RECEIVE_CREDIT)

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        link.sb_kind = "refused"
        link.open()
        link.condition = Condition(condition, description)
        link.close()

    def on_link_remote_close(self, event: Event) -> None:
        link = event.link
        assert link is not None
        self._forget_consumer(link)
        if link.state & Endpoint.LOCAL_ACTIVE:
            link.close()

    def on_session_remote_close(self, event: Event) -> None:
        session = event.session
        assert session is not None
        if session.state & Endpoint.LOCAL_ACTIVE:
            session.close()

    def on_connection_remote_close(self, event: Event) -> None:
        conn = event.connection
        assert conn is not None
        if conn.state & Endpoint.LOCAL_ACTIVE:
            conn.close()

    def on_transport_closed(self, event: Event) -> None:
        conn = event.connection
        for queue in self.queues.values():
            queue.consumers = [lk for lk in queue.consumers if lk.connection != conn]

    def _forget_consumer(self, link: Link) -> None:
        if isinstance(link, Sender) and getattr(link, "sb_kind", None) == "consumer":
            queue = self.queues.get(link.sb_address)
            if queue and link in queue.consumers:
                queue.consumers.remove(link)

    # --- flow and deliveries ---------------------------------------------------------

    def on_link_flow(self, event: Event) -> None:
        link = event.link
        if not isinstance(link, Sender):
            return
        kind = getattr(link, "sb_kind", None)
        if kind == "consumer":
            self._pump(self._queue(link.sb_address))
        elif kind == "reply":
            self._flush_replies(link)

    def on_delivery(self, event: Event) -> None:
        delivery = event.delivery
        assert delivery is not None
        if delivery.link.is_receiver:
            self._incoming(delivery)
        else:
            self._outcome(delivery)

    def _incoming(self, delivery: Delivery) -> None:
        link = delivery.link
        assert isinstance(link, Receiver)  # on_delivery sends only a receiver's here
        if not delivery.readable:
            return
        try:
            buf = delivery.sb_buf
        except AttributeError:
            buf = delivery.sb_buf = bytearray()
        chunk = link.recv(delivery.pending)
        if chunk:
            buf.extend(chunk)
        if delivery.partial:
            return
        link.advance()
        if delivery.aborted:
            delivery.settle()
            return
        raw = bytes(buf)
        error: Condition | None = None
        try:
            if link.sb_kind == "request":
                self._management(link, raw)
            elif link.sb_kind == "producer":
                self._enqueue(self._queue(link.sb_address), raw)
        except CodecError as exc:
            log.warning("refused a transfer on %s: %s", link.sb_address, exc)
            error = Condition("amqp:decode-error", str(exc))
        if error is None:
            delivery.update(Delivery.ACCEPTED)
        else:
            delivery.local.condition = error
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        if link.credit < RECEIVE_CREDIT // 2:
            link.flow(RECEIVE_CREDIT - link.credit)

    def _enqueue(self, queue: QueueState, raw: bytes) -> None:
        sections = split_sections(raw)
        encoded = unpack_batch(sections) or [raw]
        stored = []
        for one in encoded:
            self.sequence += 1
            stored.append(StoredMessage.from_encoded(one, self.sequence, now_ms()))
        queue.ready.extend(stored)
        log.info("%s: +%d message(s), %d ready", queue.name, len(stored), len(queue.ready))
        self._pump(queue)

    def _queue(self, name: str) -> QueueState:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = QueueState(name)
        return queue

    @staticmethod
    def _pre_settled(link: Link) -> bool:
        return bool(link.remote_snd_settle_mode == Link.SND_SETTLED)

    def _pump(self, queue: QueueState) -> None:
        """Hand ready messages to consumers with credit, one each in turn."""
        queue.consumers = [
            lk
            for lk in queue.consumers
            if lk.state & Endpoint.LOCAL_ACTIVE and lk.state & Endpoint.REMOTE_ACTIVE
        ]
        progress = True
        while queue.ready and progress:
            progress = False
            for link in queue.consumers:
                if not queue.ready:
                    break
                if link.credit > 0:
                    self._deliver(queue, link, queue.ready.pop(0))
                    progress = True
        for link in queue.consumers:
            if link.drain_mode and link.credit > 0:
                link.drained()

    def _deliver(self, queue: QueueState, link: Sender, message: StoredMessage) -> None:
        token = uuid.uuid4()
        # proton annotates the tag as str, but takes (and the SDK needs) bytes.
        delivery = link.delivery(token.bytes_le)  # type: ignore[arg-type]
        if self._pre_settled(link):
            link.send(message.encode())
            link.advance()
            delivery.settle()
            return
        lock = Lock(token, queue, message, now_ms() + self.lock_duration_ms, delivery)
        delivery.sb_token = token
        link.send(message.encode({"x-opt-locked-until": timestamp(lock.expires_ms)}))
        link.advance()
        queue.locks[token] = lock
        self.locks[token] = lock

    def _outcome(self, delivery: Delivery) -> None:
        """The receiver settled (or disposed of) a message we delivered: apply and echo."""
        if getattr(delivery.link, "sb_kind", None) != "consumer":
            if delivery.remote_state or delivery.settled:
                delivery.settle()
            return
        state = delivery.remote_state
        if not delivery.settled and (not state or state == Delivery.RECEIVED):
            return  # no terminal outcome yet
        token = getattr(delivery, "sb_token", None)
        lock = self.locks.get(token) if token is not None else None
        if lock is None:
            # The lock expired (or was settled through $management) before this arrived.
            if not delivery.settled:
                delivery.local.condition = Condition(LOCK_LOST, "the lock on the message was lost")
                delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        lock.delivery = None
        if state == Delivery.ACCEPTED:
            self._complete(lock)
        elif state == Delivery.MODIFIED:
            if delivery.remote.undeliverable:
                # Service Bus "defer": not supported; refuse it, the lock stays.
                delivery.local.condition = Condition(
                    NOT_IMPLEMENTED, "defer is not supported by the test broker"
                )
                delivery.update(Delivery.REJECTED)
                delivery.settle()
                return
            self._unlock(lock, count_delivery=bool(delivery.remote.failed))
        elif state == Delivery.REJECTED:
            condition = delivery.remote.condition
            raw_info = condition.info if condition else None
            info: dict[Any, Any] = raw_info if isinstance(raw_info, dict) else {}
            reason = info.get(symbol("DeadLetterReason"), info.get("DeadLetterReason"))
            text = info.get(
                symbol("DeadLetterErrorDescription"), info.get("DeadLetterErrorDescription")
            )
            self._dead_letter(lock, reason, text)
        else:  # released, or settled with no outcome: back to the queue
            self._unlock(lock, count_delivery=False)
        if not delivery.settled:
            # Echo the applied outcome: the SDK (peek-lock, rcv-settle-mode second)
            # waits for a settled disposition carrying the outcome it asked for.
            if state == Delivery.MODIFIED:
                delivery.local.failed = delivery.remote.failed
                delivery.local.undeliverable = delivery.remote.undeliverable
            delivery.update(state if state else Delivery.RELEASED)
        delivery.settle()
        self._pump(lock.queue)

    # --- what happens to a locked message --------------------------------------------

    def _drop_lock(self, lock: Lock) -> None:
        self.locks.pop(lock.token, None)
        lock.queue.locks.pop(lock.token, None)

    def _complete(self, lock: Lock) -> None:
        self._drop_lock(lock)
        log.info("%s: completed #%d", lock.queue.name, lock.message.sequence_number)

    def _unlock(self, lock: Lock, count_delivery: bool) -> None:
        self._drop_lock(lock)
        lock.delivery = None  # if it expired on the link, a late outcome gets lock-lost
        message = lock.message
        if count_delivery:
            message.delivery_count += 1
        if message.delivery_count >= self.max_delivery_count:
            self._dead_letter(lock, "MaxDeliveryCountExceeded", locked=False)
            return
        lock.queue.put_back(message)
        log.info(
            "%s: #%d back (delivery count %d)",
            lock.queue.name,
            message.sequence_number,
            message.delivery_count,
        )
        self._pump(lock.queue)

    def _dead_letter(
        self, lock: Lock, reason: str | None, description: str | None = None, locked: bool = True
    ) -> None:
        if locked:
            self._drop_lock(lock)
        message = lock.message
        log.info("%s: #%d dead-lettered (%s)", lock.queue.name, message.sequence_number, reason)
        if lock.queue.name.endswith(DLQ_SUFFIX):
            return  # what is dead-lettered from a dead-letter queue is dropped
        dlq = self._queue(lock.queue.name + DLQ_SUFFIX)
        if reason:
            message.set_application_property("DeadLetterReason", str(reason))
        if description:
            message.set_application_property("DeadLetterErrorDescription", str(description))
        self.sequence += 1
        message.sequence_number = self.sequence
        dlq.ready.append(message)
        self._pump(dlq)

    # --- $cbs and $management ----------------------------------------------------------

    def _management(self, link: Receiver, raw: bytes) -> None:
        request = Message()
        request.decode(raw)
        props: dict[Any, Any] = request.properties or {}
        operation = str(props.get("operation", ""))
        node = link.sb_address
        reply_to = entity_name(request.reply_to) if request.reply_to else node
        body: Any = None
        condition: str | None = None
        if node == CBS_NODE:
            if operation == "put-token":
                self.tokens_put += 1
                status, description = 202, "Accepted"
            else:
                status, description = 501, f"operation {operation!r} is not supported on $cbs"
                condition = NOT_IMPLEMENTED
        else:
            queue = self._queue(node[: -len(MGMT_SUFFIX)])
            status, description, body, condition = self._queue_operation(
                queue, operation, request.body
            )
        log.info("%s %s -> %d", node, operation, status)
        reply = Message(
            correlation_id=request.id,
            properties={
                "status-code": status,
                "status-description": description,
                "statusCode": status,
                "statusDescription": description,
                **({"errorCondition": symbol(condition)} if condition else {}),
            },
            body=body,
        )
        self._reply(link.connection, reply_to, reply)

    def _queue_operation(
        self, queue: QueueState, operation: str, body: Any
    ) -> tuple[int, str, Any, str | None]:
        args = body if isinstance(body, dict) else {}
        if operation == f"{VENDOR}:renew-lock":
            tokens = _uuids(args.get("lock-tokens"))
            missing = [t for t in tokens if t not in queue.locks]
            if missing:
                return 410, f"lock {missing[0]} was lost", None, LOCK_LOST
            expiries = []
            for token in tokens:
                queue.locks[token].expires_ms = now_ms() + self.lock_duration_ms
                expiries.append(timestamp(queue.locks[token].expires_ms))
            # proton's Array annotation leaves out the UNDESCRIBED it passes itself.
            expirations = Array(UNDESCRIBED, Data.TIMESTAMP, *expiries)  # type: ignore[arg-type]
            return 200, "OK", {"expirations": expirations}, None
        if operation == f"{VENDOR}:update-disposition":
            status = str(args.get("disposition-status", ""))
            tokens = _uuids(args.get("lock-tokens"))
            missing = [t for t in tokens if t not in queue.locks]
            if missing:
                return 410, f"lock {missing[0]} was lost", None, LOCK_LOST
            if status not in ("completed", "abandoned", "suspended"):
                return (
                    501,
                    f"disposition {status!r} is not supported by the test broker",
                    None,
                    NOT_IMPLEMENTED,
                )
            for token in tokens:
                lock = queue.locks[token]
                # A delivery still on a receiver link stays unsettled there: settling it
                # later over the link then gets lock-lost, as from Service Bus.
                lock.delivery = None
                if status == "completed":
                    self._complete(lock)
                elif status == "abandoned":
                    self._unlock(lock, count_delivery=True)
                else:
                    self._dead_letter(
                        lock,
                        args.get("deadletter-reason") or None,
                        args.get("deadletter-description") or None,
                    )
            return 200, "OK", {}, None
        if operation == f"{VENDOR}:peek-message":
            start = int(args.get("from-sequence-number") or 0)
            count = int(args.get("message-count") or 1)
            candidates = sorted(
                [*queue.ready, *(lk.message for lk in queue.locks.values())],
                key=lambda m: m.sequence_number,
            )
            found = [m for m in candidates if m.sequence_number >= start][:count]
            if not found:
                return 204, "No messages", None, None
            return 200, "OK", {"messages": [{"message": m.encode()} for m in found]}, None
        return (
            501,
            f"operation {operation!r} is not supported by the test broker",
            None,
            NOT_IMPLEMENTED,
        )

    def _reply(self, conn: Any, address: str, reply: Message) -> None:
        link = conn.link_head(Endpoint.LOCAL_ACTIVE)
        while link is not None:
            if (
                link.is_sender
                and getattr(link, "sb_kind", None) == "reply"
                and link.sb_address == address
            ):
                link.sb_pending.append(reply.encode())
                self._flush_replies(link)
                return
            link = link.next(Endpoint.LOCAL_ACTIVE)
        log.warning("no reply link for %s on this connection; response dropped", address)

    def _flush_replies(self, link: Sender) -> None:
        while link.sb_pending and link.credit > 0:
            delivery = link.delivery(uuid.uuid4().bytes)  # type: ignore[arg-type]  # bytes tag
            link.send(link.sb_pending.pop(0))
            link.advance()
            delivery.settle()


def _uuids(value: Any) -> list[uuid.UUID]:
    items = value.elements if isinstance(value, Array) else list(value or [])
    out = []
    for item in items:
        out.append(item if isinstance(item, uuid.UUID) else uuid.UUID(str(item)))
    return out


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    port_file: Path | None = None,
    lock_duration: float = 30.0,
    max_delivery_count: int = 10,
) -> None:
    """Run the broker in this thread until the process is told to stop."""
    broker = Broker(host, port, port_file, lock_duration, max_delivery_count)
    Container(broker).run()


__all__ = ["Broker", "entity_name", "serve"]
