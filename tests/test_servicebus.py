"""The Service Bus heartbeat transport, with the real azure-servicebus SDK against the
test broker in ``tests/servicebus_broker`` (Microsoft's emulator needs Docker).

Every test uses its own queue names, so they share one broker; the restart test
starts its own.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from proton import Message
from proton.utils import BlockingConnection

from heartbeat.transports.servicebus import ServiceBusTransport, TransportError
from jobruntime.controlplane.service.servicebus import ServiceBusHeartbeatConsumer
from jobruntime.errors import JobRuntimeError
from tests.servicebus_broker import BrokerProcess, connection_string
from tests.servicebus_broker.fixture import servicebus_broker

__all__ = ["servicebus_broker"]  # the session fixture


def properties_of(message: Message) -> dict[str, Any]:
    """A received message's application properties (proton infers the attribute as None)."""
    props = cast(object, message.properties)
    assert isinstance(props, dict)
    return props


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"run-{suffix}", f"heartbeats-{suffix}"


@pytest.fixture
def names() -> tuple[str, str]:
    return _names()


class Collector:
    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.calls = 0
        self.fail_first = fail_first

    def __call__(self, body: bytes) -> bool:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("control plane hiccup")
        self.bodies.append(body)
        return True


def poll_until(consumer: ServiceBusHeartbeatConsumer, collector: Collector, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(collector.bodies) < count and time.monotonic() < deadline:
        consumer.poll(1.0)
    assert len(collector.bodies) == count


@pytest.fixture
def transport(
    servicebus_broker: BrokerProcess, names: tuple[str, str]
) -> Iterator[ServiceBusTransport]:
    run_id, queue = names
    with ServiceBusTransport(
        servicebus_broker.connection_string, run_id, heartbeat_queue=queue
    ) as sb:
        yield sb


def test_cbs_put_token_is_answered_with_202(servicebus_broker: BrokerProcess) -> None:
    conn = BlockingConnection(
        f"amqp://127.0.0.1:{servicebus_broker.port}", timeout=5, allowed_mechs="ANONYMOUS"
    )
    try:
        replies = conn.create_receiver("$cbs")
        requests = conn.create_sender("$cbs")
        request_id = uuid.uuid4()
        requests.send(
            Message(
                id=request_id,
                reply_to="$cbs",
                body="SharedAccessSignature sr=sb%3A%2F%2F127.0.0.1&sig=x&se=1&skn=k",
                properties={
                    "operation": "put-token",
                    "type": "servicebus.windows.net:sastoken",
                    "name": "sb://127.0.0.1/heartbeats",
                },
            )
        )
        reply = replies.receive(timeout=5)
        assert reply.correlation_id == request_id
        assert properties_of(reply)["status-code"] == 202
        assert properties_of(reply)["status-description"] == "Accepted"

        # An operation the broker does not implement gets a clear status, not silence.
        mgmt_replies = conn.create_receiver("q/$management")
        mgmt = conn.create_sender("q/$management")
        mgmt.send(
            Message(
                id="op-1",
                reply_to="q/$management",
                body={},
                properties={"operation": "com.microsoft:schedule-message"},
            )
        )
        reply = mgmt_replies.receive(timeout=5)
        assert reply.correlation_id == "op-1"
        assert properties_of(reply)["statusCode"] == 501
        assert properties_of(reply)["errorCondition"] == "amqp:not-implemented"
    finally:
        conn.close()


def test_heartbeats_arrive_in_order_with_the_run_id(
    servicebus_broker: BrokerProcess, transport: ServiceBusTransport, names: tuple[str, str]
) -> None:
    run_id, queue = names
    bodies = [json.dumps({"run_id": run_id, "seq": i}).encode() for i in range(3)]
    for body in bodies:
        transport.send(body)

    with (
        ServiceBusClient.from_connection_string(servicebus_broker.connection_string) as client,
        client.get_queue_receiver(queue) as receiver,
    ):
        got = receiver.receive_messages(max_message_count=3, max_wait_time=5)
        assert [b"".join(m.body) for m in got] == bodies
        for message in got:
            assert message.correlation_id == run_id
            assert message.application_properties == {b"run_id": run_id.encode()}
            assert message.content_type == "application/json"
            receiver.complete_message(message)

    transport.send(b'{"seq": 3}')
    collector = Collector()
    with ServiceBusHeartbeatConsumer(
        servicebus_broker.connection_string, collector, queue=queue
    ) as consumer:
        poll_until(consumer, collector, 1)
        assert collector.bodies == [b'{"seq": 3}']
        assert consumer.poll(0.5) == 0  # it was completed


def test_batch_of_five_arrives_as_five_messages_in_order(
    servicebus_broker: BrokerProcess, transport: ServiceBusTransport, names: tuple[str, str]
) -> None:
    _, queue = names
    bodies = [json.dumps({"seq": i}).encode() for i in range(5)]
    transport.send_batch(bodies)
    transport.send_batch([])  # nothing to send is not an error

    collector = Collector()
    with ServiceBusHeartbeatConsumer(
        servicebus_broker.connection_string, collector, queue=queue
    ) as consumer:
        poll_until(consumer, collector, 5)
    assert collector.bodies == bodies


def test_a_failing_handler_abandons_and_the_heartbeat_comes_back(
    servicebus_broker: BrokerProcess, transport: ServiceBusTransport, names: tuple[str, str]
) -> None:
    _, queue = names
    transport.send(b'{"seq": 0}')
    collector = Collector(fail_first=1)
    with ServiceBusHeartbeatConsumer(
        servicebus_broker.connection_string, collector, queue=queue
    ) as consumer:
        deadline = time.monotonic() + 10
        while collector.calls == 0 and time.monotonic() < deadline:
            assert consumer.poll(1.0) == 0  # the handler raised: abandoned, not completed

        with (
            ServiceBusClient.from_connection_string(servicebus_broker.connection_string) as c,
            c.get_queue_receiver(queue) as receiver,
        ):
            (peeked,) = receiver.peek_messages(max_message_count=5)
        assert peeked.delivery_count == 1
        assert b"".join(peeked.body) == b'{"seq": 0}'

        poll_until(consumer, collector, 1)
        assert collector.calls == 2
        assert consumer.poll(0.5) == 0


def test_cancel_order_reaches_the_sidecar_once(
    servicebus_broker: BrokerProcess, transport: ServiceBusTransport, names: tuple[str, str]
) -> None:
    run_id, _ = names
    assert transport.poll_cancel(0.5) is None

    with ServiceBusHeartbeatConsumer(servicebus_broker.connection_string, Collector()) as cp:
        cp.send_cancel(run_id, "operator asked")

    assert transport.poll_cancel(5) == {"run_id": run_id, "reason": "operator asked"}
    assert transport.poll_cancel(0.5) is None  # completed: not redelivered


def test_a_malformed_cancel_order_is_abandoned(
    servicebus_broker: BrokerProcess, transport: ServiceBusTransport, names: tuple[str, str]
) -> None:
    run_id, _ = names
    with ServiceBusClient.from_connection_string(servicebus_broker.connection_string) as client:
        with client.get_queue_sender(f"cancel-{run_id}") as sender:
            sender.send_messages(ServiceBusMessage(b"not json"))
        assert transport.poll_cancel(5) is None
        with client.get_queue_receiver(f"cancel-{run_id}") as receiver:
            (peeked,) = receiver.peek_messages(max_message_count=5)
    assert peeked.delivery_count == 1  # abandoned, still there


def test_transport_and_consumer_survive_a_broker_restart(tmp_path: Path) -> None:
    run_id, queue = _names()
    collector = Collector()
    with BrokerProcess(tmp_path) as broker:
        port = broker.port
        transport = ServiceBusTransport(broker.connection_string, run_id, heartbeat_queue=queue)
        consumer = ServiceBusHeartbeatConsumer(broker.connection_string, collector, queue=queue)
        try:
            transport.send(b'{"seq": 0}')
            poll_until(consumer, collector, 1)

            broker.restart()
            assert broker.port == port

            transport.send(b'{"seq": 1}')  # reconnects
            poll_until(consumer, collector, 2)
            assert collector.bodies == [b'{"seq": 0}', b'{"seq": 1}']

            consumer.send_cancel(run_id, "after restart")
            assert transport.poll_cancel(5) == {"run_id": run_id, "reason": "after restart"}
        finally:
            transport.close()
            consumer.close()


def test_a_silent_peer_fails_within_the_timeout_without_leaking_the_key() -> None:
    """A peer that accepts TCP and never speaks AMQP: the SDK alone would block forever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        conn_str = connection_string("127.0.0.1", silent.getsockname()[1]).replace(
            "SAS_KEY_VALUE", "c2VjcmV0LWtleS12YWx1ZQ=="
        )
        transport = ServiceBusTransport(conn_str, "run-silent", timeout=2.0)
        try:
            started = time.monotonic()
            with pytest.raises(TransportError) as err:
                transport.send(b"{}")
            assert time.monotonic() - started < 4.0
        finally:
            transport.close()
    assert isinstance(err.value, JobRuntimeError)
    assert err.value.code == "heartbeat.transport"
    assert err.value.exit_code == 28
    assert "c2VjcmV0LWtleS12YWx1ZQ==" not in err.value.one_line()


def test_unreachable_broker_and_bad_input_are_typed_errors() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = ServiceBusTransport(connection_string("127.0.0.1", port), "run-x", timeout=3.0)
    try:
        with pytest.raises(TransportError, match="send to queue 'heartbeats' failed"):
            transport.send(b"{}")
        with pytest.raises(TransportError, match="receive from queue 'cancel-run-x' failed"):
            transport.poll_cancel(0.2)
    finally:
        transport.close()
    with pytest.raises(TransportError, match="malformed"):
        ServiceBusTransport("Endpoint=nothing;SharedAccessKey=k", "run-x")
    with pytest.raises(TransportError, match="run id"):
        ServiceBusTransport(connection_string("127.0.0.1", port), "bad/run id")
