"""Signed orders from the control plane to a run's pods (today: cancel).

An answer to a heartbeat, or a message on a cancel queue, passes through the
network and, for Service Bus, a broker: neither is trusted. A pod acts on an order
only when the control plane's keys in its pinned trust root signed it for its run.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobruntime.errors import JobRuntimeError
from jobruntime.signing import envelope
from jobruntime.signing.roots import CONTROL_PLANE, RootLike
from jobruntime.spec.codec import canonical
from jobruntime.spec.plain import PlainCancelOrder, parse_cancel_order

if TYPE_CHECKING:
    from jobruntime.signing.keys import SigningKey


class OrderError(JobRuntimeError):
    """An order that is not signed by the control plane for this run: ignored."""

    code = "order.unverified"
    exit_code = 20


def sign_cancel(key: SigningKey, run_id: str, reason: str, now: datetime) -> dict[str, Any]:
    from jobruntime.spec.models import CancelOrder

    order = CancelOrder(run_id=run_id, reason=reason[:200], issued_at=now)
    return envelope.to_json(envelope.sign(canonical(order), envelope.ORDER_TYPE, [key]))


def verify_cancel(obj: Any, trust_root: RootLike, run_id: str, now: datetime) -> PlainCancelOrder:
    """Verify, then parse: the control plane's signature, then the order, then its run."""
    try:
        # 1.-2. The envelope, signed by the control plane's keys in the pinned trust root.
        env = envelope.from_json(obj, envelope.ORDER_TYPE, "cancel order")
        envelope.verify(env, trust_root, trust_root.control_plane, CONTROL_PLANE, now)
        # 3. Only then the order itself (plain JSON: the heartbeat sidecar checks it).
        order = parse_cancel_order(env.payload)
    except JobRuntimeError as exc:
        raise OrderError(f"cancel order refused: {exc.one_line()}") from None
    # 4. For this run.
    if order.run_id != run_id:
        raise OrderError(f"cancel order is for {order.run_id}, not {run_id}")
    return order
