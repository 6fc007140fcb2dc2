"""Signed orders from the control plane to a run's pods (today: cancel).

An answer to a heartbeat, or a message on a cancel queue, passes through the
network and, for Service Bus, a broker: neither is trusted. A pod acts on an order
only when the control plane's keys in its pinned trust root signed it for its run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobruntime.errors import JobRuntimeError
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.codec import canonical
from jobruntime.spec.models import CancelOrder


class OrderError(JobRuntimeError):
    """An order that is not signed by the control plane for this run: ignored."""

    code = "order.unverified"
    exit_code = 20


def sign_cancel(key: SigningKey, run_id: str, reason: str, now: datetime) -> dict[str, Any]:
    order = CancelOrder(run_id=run_id, reason=reason[:200], issued_at=now)
    return envelope.to_json(envelope.sign(canonical(order), envelope.ORDER_TYPE, [key]))


def verify_cancel(obj: Any, trust_root: TrustRoot, run_id: str, now: datetime) -> CancelOrder:
    """Verify, then parse: the control plane's signature, then the order, then its run."""
    try:
        # 1.-3. Signed by the control plane's keys in the pinned trust root, then parsed.
        order = envelope.open_signed(
            obj, envelope.ORDER_TYPE, CancelOrder, "cancel order", trust_root, now
        )
    except JobRuntimeError as exc:
        raise OrderError(f"cancel order refused: {exc.one_line()}") from None
    # 4. For this run.
    if order.run_id != run_id:
        raise OrderError(f"cancel order is for {order.run_id}, not {run_id}")
    return order
