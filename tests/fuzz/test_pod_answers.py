"""What a pod's sidecars read off the network, a broker or the pod's volume.

The control plane's answers (sessions, releases, dataset versions, heartbeat acks)
cross the network; cancel orders also come from a Service Bus queue and reach the
driver as a file. The pod acts on none of it unchecked: each parser gives its value
or its typed error, and a cancel order is obeyed only when it verifies.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartbeat.transports.servicebus import ServiceBusTransport
from jobruntime.controlplane.pod import PodClient
from jobruntime.controlplane.transport import Transport
from jobruntime.errors import ControlPlaneError
from jobruntime.job.handoff import CANCEL_ORDER, read_cancel_order
from jobruntime.signing import envelope
from jobruntime.signing.orders import verify_cancel
from jobruntime.spec.codec import canonical
from jobruntime.verification.sidecar import BUNDLE_NAME, load_plain_bundle
from tests.fuzz.support import Refused, byte_mutation, dump, json_inputs, mutated_tree, typed
from tests.fuzz.test_signed import AT, RUN_ID, SPEC_DIGEST, keys, signed, valid_run
from tests.fuzz.test_spec import CANCEL

STAMP = "2030-01-01T00:10:00+00:00"


class Answers:
    """A transport whose every call answers ``reply``: the network, as a hostile proxy."""

    url = "http://control-plane.invalid"

    def __init__(self) -> None:
        self.reply = b""

    def call(self, method: str, path: str, **kw: Any) -> bytes:
        return self.reply

    def close(self) -> None:
        return None


def order() -> dict[str, Any]:
    return signed(canonical(CANCEL), envelope.ORDER_TYPE, keys().cp)


SEEDS: list[tuple[Callable[[PodClient], Any], dict[str, Any]]] = [
    (lambda c: c.challenge(RUN_ID), {"nonce": "1" * 64, "expires_at": STAMP}),
    (
        lambda c: c.attest({}),
        {"session": "s", "expires_at": STAMP, "measurement": "m", "evidence_kind": "emulated"},
    ),
    (lambda c: c.release("s", "sales"), {"dataset": "sales", "key_id": "k", "jwe": "a.b.c.d.e"}),
    (lambda c: c.spark_secret("s"), {"run_id": RUN_ID, "jwe": "a.b.c.d.e"}),
    (
        lambda c: c.latest_version("s", "sales"),
        {
            "uri": "file:///d/s",
            "key_id": "k",
            "version": 1,
            "manifest_digest": "sha256:" + "0" * 64,
            "updated_at": STAMP,
        },
    ),
    (
        lambda c: c.heartbeat(RUN_ID, "s", "a.b.c"),
        {"accepted": True, "run_id": RUN_ID, "cancel": True, "reason": "x", "order": {}},
    ),
]


@st.composite
def pod_answers(draw: st.DrawFn) -> tuple[Callable[[PodClient], Any], bytes, bool]:
    """A call, the answer it gets, and whether that is a heartbeat ack (carrying an order)."""
    call, seed = draw(st.sampled_from(SEEDS))
    ack = "order" in seed
    if ack:
        seed = seed | {"order": draw(st.one_of(st.just(order()), mutated_tree(order())))}
    return call, draw(json_inputs(seed, keys=list(seed))), ack


def _heartbeat_then_cancel(client: PodClient) -> bool:
    """The sidecar's path: the ack, then the order it carries verified before it is obeyed."""
    ack = client.heartbeat(RUN_ID, "s", "a.b.c")
    if not ack.cancel:
        return False
    verify_cancel(ack.order, keys().plain_root, RUN_ID, AT)
    return True


@given(pod_answers())
def test_control_plane_answers(answer: tuple[Callable[[PodClient], Any], bytes, bool]) -> None:
    call, body, ack = answer
    transport = Answers()
    transport.reply = body
    client = PodClient(cast(Transport, transport))
    result = typed(call, client)
    assert not isinstance(result, Refused) or isinstance(result.error, ControlPlaneError)
    if ack:
        typed(_heartbeat_then_cancel, client)


# --- cancel orders from the Service Bus, and on the pod's volume -----------------------------


class Message:
    """What ``ServiceBusReceivedMessage`` offers the parser: a body and a sequence number."""

    sequence_number = 7

    def __init__(self, body: bytes) -> None:
        self.body = body


@pytest.fixture(scope="module")
def bus() -> Iterator[ServiceBusTransport]:
    """A transport whose SDK client is made but never connects (nothing is sent here)."""
    connection = "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=fuzz;SharedAccessKey=fuzz"
    transport = ServiceBusTransport(connection, RUN_ID)
    yield transport
    transport.close()


def bus_messages() -> st.SearchStrategy[bytes]:
    seed = {"run_id": RUN_ID, "reason": "cancelled", "order": order()}
    return st.one_of(
        json_inputs(seed, keys=list(seed)),
        mutated_tree(seed).map(dump),
        st.just(dump(seed)).flatmap(byte_mutation),
    )


def _from_the_bus(bus: ServiceBusTransport, body: bytes) -> bool:
    """The sidecar's path for a message on ``cancel-<run>``: parse, then verify the order."""
    found = bus._parse(cast(Any, Message(body)))
    if found is None:
        return False
    verify_cancel(found.get("order"), keys().plain_root, RUN_ID, AT)
    return True


@given(bus_messages())
def test_cancel_from_the_service_bus(bus: ServiceBusTransport, body: bytes) -> None:
    typed(_from_the_bus, bus, body)


@pytest.fixture(scope="module")
def volume() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fuzz-volume-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@given(
    st.one_of(
        json_inputs(order(), keys=["payload"]),
        st.just(dump(order())).flatmap(byte_mutation),
        mutated_tree(order()).map(dump),
    )
)
def test_cancel_order_file(volume: Path, data: bytes) -> None:
    """The driver's watch: whatever ``cancel-order.json`` holds, True only for a genuine
    order for its run, and never an exception that would end the watch thread."""
    (volume / CANCEL_ORDER).write_bytes(data)
    obeyed = typed(read_cancel_order, volume, keys().plain_root, RUN_ID)
    assert obeyed in (True, False)


def test_regression_nested_cancel_orders_are_ignored(
    bus: ServiceBusTransport, volume: Path
) -> None:
    """Found by fuzzing: a broker message or order file nested past the recursion limit
    raised RecursionError out of the sidecar's poll and out of the driver's watch."""
    deep = b"[" * 5000
    assert bus._parse(cast(Any, Message(deep))) is None
    (volume / CANCEL_ORDER).write_bytes(deep)
    assert read_cancel_order(volume, keys().plain_root, RUN_ID) is False


# --- the verified bundle, as the sidecars re-read it ---------------------------------------


def bundle() -> dict[str, Any]:
    run = valid_run()
    receipt: dict[str, Any] = {
        "run_id": RUN_ID,
        "spec_digest": SPEC_DIGEST,
        "pod_id": "0" * 32,
        "role": "driver",
        "verified_at": STAMP,
        "verifier_version": "0.1.0",
        "trust_root_digest": "sha256:" + "0" * 64,
        "module_path": "/opt/jobruntime/jobs/sales.py",
        "module_sha256": "0" * 64,
        "image_digest": "sha256:" + "1" * 64,
        "checks": ["1. envelope"],
        "claim": {},
        "attestation": None,
    }
    return {"schema_version": 2, **run, "receipt": receipt}


def test_the_seed_bundle_loads(volume: Path) -> None:
    (volume / BUNDLE_NAME).write_bytes(dump(bundle()))
    assert load_plain_bundle(volume, keys().plain_root, now=AT).run_id == RUN_ID


@given(
    st.one_of(
        json_inputs(bundle(), keys=["receipt", "envelope"]),
        st.builds(bundle).flatmap(mutated_tree).map(dump),
    )
)
def test_verified_bundle(volume: Path, data: bytes) -> None:
    """The key agent and heartbeat sidecars re-verify the bundle the verifier wrote."""
    (volume / BUNDLE_NAME).write_bytes(data)
    typed(load_plain_bundle, volume, keys().plain_root, now=AT)
