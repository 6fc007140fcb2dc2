"""Liveness: signed heartbeats from the attested sidecar, timeouts, and cancel orders.

A heartbeat is a compact JWS by the ephemeral key the sidecar bound into its own
attestation, so only the claiming driver pod's heartbeat session speaks for the run.
Sequence numbers only go up (a replay is refused), finished runs take no more
heartbeats, a run whose heartbeats stop for ``factor`` intervals is marked failed
with reason ``heartbeat-timeout``, and the answer to each heartbeat carries the
control plane's signed cancel order when the run is cancelled.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

from jobruntime.controlplane.api import Heartbeat, HeartbeatAck, RunState, SignedHeartbeat
from jobruntime.controlplane.service import sessions
from jobruntime.controlplane.service.core import ControlPlane
from jobruntime.controlplane.service.errors import ServiceError
from jobruntime.controlplane.service.repository import Liveness, RunRecord, Tx
from jobruntime.errors import JobRuntimeError
from jobruntime.signing import orders
from jobruntime.spec.models import JobRunSpec, utcnow

TIMEOUT_FACTOR = 3.0
CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(hours=2)  # a sidecar's backlog (360 beats) at up to 20 s apart
HEARTBEAT_NEED = sessions.Need(
    purposes=("heartbeat",), roles=("driver",), event="heartbeat.refused", code="heartbeat.session"
)
_FINISHED = (RunState.SUCCEEDED, RunState.FAILED)


def accept(
    cp: ControlPlane, signed: SignedHeartbeat, actor: str, run_id: str | None = None
) -> HeartbeatAck:
    """Check and record one heartbeat (from HTTP or the Service Bus consumer)."""
    now = utcnow()
    # 1. From the claiming driver pod's heartbeat session (only that pod can open one),
    #    signed by the key that session's evidence bound.
    session, _ = sessions.require(cp, signed.session, HEARTBEAT_NEED, now=now, actor=actor)
    try:
        beat = Heartbeat.model_validate_json(session.verify(signed.jws))
    except (JobRuntimeError, ValueError):
        cp.audit(now, "heartbeat.refused", session.run_id, actor, {"reason": "forged"})
        raise ServiceError(
            403, "heartbeat.forged", "the heartbeat is not signed by the attested key"
        ) from None
    if beat.run_id != session.run_id or (run_id is not None and run_id != beat.run_id):
        raise ServiceError(403, "heartbeat.forged", "the heartbeat names another run")
    # 2. Its time is ours within the skew, and no older than a full sidecar backlog.
    if not now - MAX_AGE <= beat.at <= now + CLOCK_SKEW:
        cp.audit(now, "heartbeat.refused", beat.run_id, actor, {"reason": "heartbeat.clock"})
        raise ServiceError(409, "heartbeat.clock", "the heartbeat's time is outside the window")
    with cp.repo.tx() as tx:
        run = tx.run(beat.run_id)
        assert run is not None
        refusal = _refusal(tx, beat, run.state, now, actor)
        if refusal is None:
            _record(tx, beat, now, actor)
            if beat.final and run.state is RunState.CLAIMED:
                _finish(tx, beat, run, now, actor)
    if refusal:
        raise ServiceError(*refusal)
    if run.state is not RunState.CANCELLED:
        return HeartbeatAck(accepted=True, run_id=beat.run_id)
    # 6. A cancel is an order signed by the control plane: the sidecar acts on nothing else.
    reason = run.cancel_reason or "cancelled"
    return HeartbeatAck(
        accepted=True,
        run_id=beat.run_id,
        cancel=True,
        reason="cancelled",
        order=orders.sign_cancel(cp.key, beat.run_id, reason, now),
    )


def _refusal(
    tx: Tx, beat: Heartbeat, state: RunState, now: datetime, actor: str
) -> tuple[int, str, str] | None:
    """3. Not for a finished run; 4. newer than every heartbeat before it."""
    if state in _FINISHED:
        reason = "finished"
        refusal = (409, "heartbeat.run_finished", f"{beat.run_id} is {state.value}")
    else:
        last = tx.liveness(beat.run_id)
        if last is None or beat.seq > last.last_seq:
            return None
        reason = "replayed"
        refusal = (409, "heartbeat.replayed", f"heartbeat {beat.seq} was already seen")
    tx.audit(now, "heartbeat.refused", beat.run_id, actor, {"reason": reason, "seq": beat.seq})
    return refusal


def _record(tx: Tx, beat: Heartbeat, now: datetime, actor: str) -> None:
    tx.record_liveness(
        Liveness(beat.run_id, beat.seq, now, beat.interval, beat.progress.model_dump_json())
    )
    tx.audit(
        now,
        "heartbeat",
        beat.run_id,
        actor,
        {"seq": beat.seq, "state": beat.state, "final": beat.final, **beat.progress.model_dump()},
    )


def _finish(tx: Tx, beat: Heartbeat, run: RunRecord, now: datetime, actor: str) -> None:
    """5. The final heartbeat carries the run's outcome: the only way a run ends well.

    A success must name, for every output it wrote, the version and manifest digest
    the control plane recorded when the pod's key agent published it.
    """
    if beat.state == "succeeded":
        mismatch = _output_mismatch(tx, run.spec, beat)
        final, reason = (
            (RunState.FAILED, f"run.output_mismatch: {mismatch}")
            if mismatch
            else (RunState.SUCCEEDED, None)
        )
    else:
        final, reason = RunState.FAILED, beat.reason or f"driver-{beat.state}"
    tx.set_state(
        beat.run_id,
        final,
        expect=[RunState.CLAIMED],
        finished_at=now.isoformat(),
        outcome_reason=reason,
        outputs=json.dumps([o.model_dump() for o in beat.outputs]),
    )
    tx.audit(
        now,
        f"run.{final.value}",
        beat.run_id,
        actor,
        {"reason": reason, "outputs": {o.dataset: o.manifest_digest for o in beat.outputs}},
    )


def _output_mismatch(tx: Tx, spec: JobRunSpec, beat: Heartbeat) -> str | None:
    """Why the outputs a success names are not exactly the versions this run published.

    Each named version must be one this run's key agent published (whatever was
    published to the dataset since), and every output the run published must be
    named, at the last version it published.
    """
    declared = {d.name: d for d in spec.outputs}
    named = {o.dataset: o for o in beat.outputs}
    if len(named) != len(beat.outputs):
        return "an output is named twice"
    for name in named.keys() - declared.keys():
        return f"{name} is not an output"
    for name, dataset in sorted(declared.items()):
        mine = tx.last_publish(dataset.uri, beat.run_id)
        out = named.get(name)
        if out is None:
            if mine is not None:
                return f"{name} v{mine[0]} was published by this run but not reported"
            continue
        if mine != (out.version, out.manifest_digest):
            return f"{name} v{out.version} is not the last version this run published"
    return None


def expire(
    cp: ControlPlane, now: datetime, factor: float = TIMEOUT_FACTOR, since: datetime | None = None
) -> list[str]:
    """Mark failed every running run whose heartbeats stopped; return their ids.

    ``since`` is when this control plane started: its own downtime is not the pod's
    silence, so no run times out before it has had the chance to reach us again.
    """
    expired = []
    with cp.repo.tx() as tx:
        for live in tx.claimed_liveness():
            silent = now - (max(live.last_at, since) if since else live.last_at)
            if silent > timedelta(seconds=factor * live.interval):
                tx.set_state(
                    live.run_id,
                    RunState.FAILED,
                    expect=[RunState.CLAIMED],
                    finished_at=now.isoformat(),
                    outcome_reason="heartbeat-timeout",
                )
                tx.audit(
                    now,
                    "run.failed",
                    live.run_id,
                    "control-plane",
                    {
                        "reason": "heartbeat-timeout",
                        "silent_seconds": round(silent.total_seconds(), 1),
                    },
                )
                expired.append(live.run_id)
    return expired


def watch(
    cp: ControlPlane,
    stop: threading.Event,
    *,
    factor: float = TIMEOUT_FACTOR,
    summary: timedelta = timedelta(seconds=60),
    every: float = 0.5,
) -> threading.Thread:
    """The control plane's clock: heartbeat timeouts and the summary of unauthenticated
    refusals, until ``stop`` is set."""
    started = utcnow()

    def loop() -> None:
        while not stop.wait(every):
            expire(cp, utcnow(), factor, since=started)
            cp.denials.flush(cp, utcnow(), summary)

    thread = threading.Thread(target=loop, name="heartbeat-timeouts", daemon=True)
    thread.start()
    return thread
