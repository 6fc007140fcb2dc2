"""Liveness: signed heartbeats from the attested sidecar, timeouts, and cancel orders.

A heartbeat is a compact JWS by the ephemeral key the sidecar bound into its own
attestation, so only the attested pod can speak for the run. Sequence numbers
only go up (a replay is refused), finished runs take no more heartbeats, and a
run whose heartbeats stop for ``timeout_factor`` intervals is marked failed with
reason ``heartbeat-timeout``. The answer to each heartbeat carries the cancel order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI

from jobruntime.controlplane.api import (
    API_PREFIX,
    Heartbeat,
    HeartbeatAck,
    Role,
    RunState,
    SignedHeartbeat,
)
from jobruntime.emulator import sessions
from jobruntime.emulator.context import ApiError, Context
from jobruntime.emulator.state import Principal
from jobruntime.errors import JobRuntimeError
from jobruntime.signing import orders
from jobruntime.spec.models import JobRunSpec, utcnow

TIMEOUT_FACTOR = 3.0
CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(hours=2)  # a sidecar's backlog (360 beats) at up to 20 s apart
_FINISHED = (RunState.SUCCEEDED, RunState.FAILED)


def accept(
    ctx: Context, signed: SignedHeartbeat, actor: str, run_id: str | None = None
) -> HeartbeatAck:
    """Check and record one heartbeat (from HTTP or a Service Bus consumer)."""
    store, now = ctx.store, utcnow()
    # 1. From the claiming driver pod's heartbeat session (only that pod can open one),
    #    signed by the key that session's evidence bound.
    session = sessions.find(ctx, signed.session)
    if session is None or session.purpose != "heartbeat" or session.expires_at < now:
        ctx.audit(
            now,
            "heartbeat.refused",
            session.run_id if session else run_id,
            actor,
            {"reason": "heartbeat.session"},
        )
        raise ApiError(403, "heartbeat.session", "no heartbeat session: attest first")
    try:
        beat = Heartbeat.model_validate_json(session.verify(signed.jws))
    except (JobRuntimeError, ValueError):
        ctx.audit(now, "heartbeat.refused", session.run_id, actor, {"reason": "forged"})
        raise ApiError(
            403, "heartbeat.forged", "the heartbeat is not signed by the attested key"
        ) from None
    if beat.run_id != session.run_id or (run_id is not None and run_id != beat.run_id):
        raise ApiError(403, "heartbeat.forged", "the heartbeat names another run")
    # 1b. Its time is ours within the skew, and no older than a full sidecar backlog.
    if not now - MAX_AGE <= beat.at <= now + CLOCK_SKEW:
        ctx.audit(now, "heartbeat.refused", beat.run_id, actor, {"reason": "heartbeat.clock"})
        raise ApiError(409, "heartbeat.clock", "the heartbeat's time is outside the window")
    with store.tx() as db:
        run = db.execute("SELECT * FROM runs WHERE run_id = ?", (beat.run_id,)).fetchone()
        state = RunState(run["state"])
        refusal = _refusal(db, ctx, beat, state, now, actor)
        if refusal is None:
            _record(db, ctx, beat, now, actor)
            if beat.final and state is RunState.CLAIMED:
                _finish(db, ctx, beat, run, now, actor)
    if refusal:
        raise ApiError(*refusal)
    if state is not RunState.CANCELLED:
        return HeartbeatAck(accepted=True, run_id=beat.run_id)
    # 5. A cancel is an order signed by the control plane: the sidecar acts on nothing else.
    reason = run["cancel_reason"] or "cancelled"
    return HeartbeatAck(
        accepted=True,
        run_id=beat.run_id,
        cancel=True,
        reason="cancelled",
        order=orders.sign_cancel(ctx.key, beat.run_id, reason, now),
    )


def _refusal(
    db: sqlite3.Connection,
    ctx: Context,
    beat: Heartbeat,
    state: RunState,
    now: datetime,
    actor: str,
) -> tuple[int, str, str] | None:
    """2. Not for a finished run; 3. newer than every heartbeat before it."""
    if state in _FINISHED:
        reason, refusal = (
            "finished",
            (
                409,
                "heartbeat.run_finished",
                f"{beat.run_id} is {state.value}",
            ),
        )
    else:
        last = db.execute(
            "SELECT last_seq FROM liveness WHERE run_id = ?", (beat.run_id,)
        ).fetchone()
        if last is None or beat.seq > last["last_seq"]:
            return None
        reason, refusal = (
            "replayed",
            (
                409,
                "heartbeat.replayed",
                f"heartbeat {beat.seq} was already seen",
            ),
        )
    ctx.store.audit(
        db, now, "heartbeat.refused", beat.run_id, actor, {"reason": reason, "seq": beat.seq}
    )
    return refusal


def _record(
    db: sqlite3.Connection, ctx: Context, beat: Heartbeat, now: datetime, actor: str
) -> None:
    db.execute(
        "INSERT OR REPLACE INTO liveness VALUES (?, ?, ?, ?, ?)",
        (beat.run_id, beat.seq, now.isoformat(), beat.interval, beat.progress.model_dump_json()),
    )
    ctx.store.audit(
        db,
        now,
        "heartbeat",
        beat.run_id,
        actor,
        {"seq": beat.seq, "state": beat.state, "final": beat.final, **beat.progress.model_dump()},
    )


def _finish(
    db: sqlite3.Connection,
    ctx: Context,
    beat: Heartbeat,
    run: sqlite3.Row,
    now: datetime,
    actor: str,
) -> None:
    """4. The final heartbeat carries the run's outcome: the only way a run ends well.

    A success must name, for every output it wrote, the version and manifest digest
    the control plane recorded when the pod's key agent published it.
    """
    if beat.state == "succeeded":
        spec = JobRunSpec.model_validate_json(run["spec"])
        mismatch = _output_mismatch(db, spec, beat)
        final, reason = (
            (RunState.FAILED, f"run.output_mismatch: {mismatch}")
            if mismatch
            else (RunState.SUCCEEDED, None)
        )
    else:
        final, reason = RunState.FAILED, beat.reason or f"driver-{beat.state}"
    ctx.store.set_state(
        db,
        beat.run_id,
        final,
        expect=[RunState.CLAIMED],
        finished_at=now.isoformat(),
        outcome_reason=reason,
        outputs=json.dumps([o.model_dump() for o in beat.outputs]),
    )
    ctx.store.audit(
        db,
        now,
        f"run.{final.value}",
        beat.run_id,
        actor,
        {"reason": reason, "outputs": {o.dataset: o.manifest_digest for o in beat.outputs}},
    )


def _output_mismatch(db: sqlite3.Connection, spec: JobRunSpec, beat: Heartbeat) -> str | None:
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
        mine = db.execute(
            "SELECT version, manifest_digest FROM dataset_publishes"
            " WHERE uri = ? AND run_id = ? ORDER BY version DESC LIMIT 1",
            (dataset.uri, beat.run_id),
        ).fetchone()
        out = named.get(name)
        if out is None:
            if mine is not None:
                return f"{name} v{mine['version']} was published by this run but not reported"
            continue
        if mine is None or (mine["version"], mine["manifest_digest"]) != (
            out.version,
            out.manifest_digest,
        ):
            return f"{name} v{out.version} is not the last version this run published"
    return None


def expire(
    ctx: Context, now: datetime, factor: float = TIMEOUT_FACTOR, since: datetime | None = None
) -> list[str]:
    """Mark failed every running run whose heartbeats stopped; return their ids.

    ``since`` is when this control plane started: its own downtime is not the pod's
    silence, so no run times out before it has had the chance to reach us again.
    """
    expired = []
    with ctx.store.tx() as db:
        rows = db.execute(
            "SELECT l.run_id, l.last_at, l.interval FROM liveness l JOIN runs r"
            " ON r.run_id = l.run_id WHERE r.state = ?",
            (RunState.CLAIMED.value,),
        ).fetchall()
        for row in rows:
            last = datetime.fromisoformat(row["last_at"])
            silent = now - (max(last, since) if since else last)
            if silent > timedelta(seconds=factor * row["interval"]):
                ctx.store.set_state(
                    db,
                    row["run_id"],
                    RunState.FAILED,
                    expect=[RunState.CLAIMED],
                    finished_at=now.isoformat(),
                    outcome_reason="heartbeat-timeout",
                )
                ctx.store.audit(
                    db,
                    now,
                    "run.failed",
                    row["run_id"],
                    "control-plane",
                    {
                        "reason": "heartbeat-timeout",
                        "silent_seconds": round(silent.total_seconds(), 1),
                    },
                )
                expired.append(row["run_id"])
    return expired


def watch(ctx: Context, stop: threading.Event, every: float = 0.5) -> threading.Thread:
    factor = float(os.environ.get("JOBRUNTIME_HEARTBEAT_TIMEOUT_FACTOR", TIMEOUT_FACTOR))

    started = utcnow()

    summary = timedelta(seconds=float(os.environ.get("JOBRUNTIME_AUDIT_SUMMARY_SECONDS", "60")))

    def loop() -> None:
        while not stop.wait(every):
            expire(ctx, utcnow(), factor, since=started)
            ctx.denials.flush(ctx, utcnow(), summary)

    thread = threading.Thread(target=loop, name="heartbeat-timeouts", daemon=True)
    thread.start()
    return thread


def register(app: FastAPI, ctx: Context) -> None:
    pod = ctx.dependency(Role.VERIFIER)

    @app.post(f"{API_PREFIX}/runs/{{run_id}}/heartbeats", tags=["heartbeats"])
    def heartbeat(run_id: str, req: SignedHeartbeat, who: Principal = pod) -> HeartbeatAck:
        """One signed heartbeat; the answer says whether the run is to be cancelled."""
        ctx.load_run(run_id, who)
        return accept(ctx, req, who.name, run_id)


SERVICEBUS_ENV = "JOBRUNTIME_SERVICEBUS_CONNECTION"


def consume_servicebus(ctx: Context, connection_string: str, stop: threading.Event) -> None:
    """Heartbeats from the Service Bus queue, through the same checks as HTTP.

    Refused heartbeats are completed (the refusal is audited; redelivering them
    would not make them valid); a cancelled run's sidecar gets a cancel order.
    """
    from heartbeat.transports.servicebus import ServiceBusHeartbeatConsumer

    cancels: dict[str, tuple[str, dict[str, Any] | None]] = {}

    def handle(body: bytes) -> bool:
        try:
            ack = accept(ctx, SignedHeartbeat.model_validate_json(body), "servicebus")
        except (ApiError, ValueError):
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

    threading.Thread(target=loop, name="servicebus-heartbeats", daemon=True).start()
