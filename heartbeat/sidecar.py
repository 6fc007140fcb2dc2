"""The heartbeat sidecar: liveness and progress to the control plane, cancels to the driver.

1. Wait for the verified bundle (the verifier writes it before the pod's containers run).
2. Attest once, with purpose ``heartbeat``: the ephemeral key bound into that evidence
   signs every heartbeat, so the control plane knows they come from the attested pod.
3. Every interval: read progress from the driver's Spark REST API, sign a heartbeat
   (run id, sequence number, time, state, progress) and send it, oldest backlog first.
   An unreachable control plane never stops the loop; a bounded backlog waits.
4. An answer that orders a cancel is verified and handed to the driver as a file on the
   pod's memory volume (``job.handoff``: containers do not share PID namespaces, so no
   signal); when the driver has written its outcome, a final heartbeat carries it and
   the sidecar exits.

It runs for the pod's whole life, so it stays small: no pydantic (the bundle is
re-verified by ``verification.sidecar``, heartbeats are the JSON of ``api.Heartbeat``,
answers are checked by ``controlplane.pod``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from heartbeat.progress import SparkProgress
from jobruntime.controlplane.pod import MAX_OUTPUTS, OUTPUT_REPORT, HeartbeatAck
from jobruntime.errors import ControlPlaneError, ControlPlaneUnavailableError, JobRuntimeError
from jobruntime.job.handoff import DRIVER_OUTCOME, DRIVER_UI, hand_cancel_to_driver
from jobruntime.keyrelease.session import AttestedSession
from jobruntime.signing.orders import OrderError, verify_cancel
from jobruntime.signing.roots import PlainTrustRoot
from jobruntime.spec import plain
from jobruntime.spec.codec import canonical
from jobruntime.spec.rules import utcnow
from jobruntime.spec.shapes import ListOf
from jobruntime.verification.sidecar import BUNDLE_NAME, SidecarBundle, load_plain_bundle

log = logging.getLogger("jobruntime.heartbeat")

OUTPUTS = ListOf(OUTPUT_REPORT, max_length=MAX_OUTPUTS)
OUTCOME_POLL = 0.25
"""How often, between heartbeats, the sidecar looks for the driver's outcome."""
MAX_INTERVAL = 3600.0
"""A heartbeat's interval is in (0, 3600] seconds (``api.Heartbeat``)."""


@dataclass(frozen=True)
class SignedHeartbeat:
    """``api.SignedHeartbeat``: a heartbeat as compact JWS by the attested ephemeral key."""

    session: str
    jws: str

    def to_json(self) -> dict[str, str]:
        return {"session": self.session, "jws": self.jws}


class Transport(Protocol):
    def send(self, signed: SignedHeartbeat) -> HeartbeatAck: ...

    def close(self) -> None: ...


@dataclass
class SidecarSettings:
    bundle_dir: Path
    trust_root: Path
    interval: float = 10.0
    backlog: int = 360
    final_deadline: float = 120.0
    # A native sidecar (Kubernetes) that exits while its pod runs is restarted: after the
    # final heartbeat it waits to be stopped instead of exiting.
    wait_for_stop: bool = False
    # Stopped (the kubelet's SIGTERM once the driver has exited) with the driver's outcome
    # not yet sent: this long to get the final heartbeat through before giving up.
    stop_grace: float = 20.0


class Sidecar:
    def __init__(
        self,
        settings: SidecarSettings,
        session_for: Callable[[SidecarBundle], AttestedSession],
        transport_for: Callable[[SidecarBundle], Transport],
        progress: SparkProgress,
    ) -> None:
        self.settings = settings
        self._session_for, self._transport_for = session_for, transport_for
        self._progress = progress
        self._backlog: deque[SignedHeartbeat] = deque(maxlen=settings.backlog)
        self._stop = threading.Event()
        self._trust_root: PlainTrustRoot | None = None
        self._run_id: str | None = None
        self.sent = 0
        self.cancelled = False

    def stop(self) -> None:
        self._stop.set()

    def wait_for_bundle(self) -> SidecarBundle:
        while not (self.settings.bundle_dir / BUNDLE_NAME).exists():
            if self._stop.wait(0.2):
                raise JobRuntimeError("stopped before the verified bundle appeared")
        # Re-verified against the pinned trust root before anything in it is used; the
        # same root verifies the control plane's orders.
        self._trust_root = PlainTrustRoot.load(self.settings.trust_root)
        bundle = load_plain_bundle(self.settings.bundle_dir, self._trust_root, now=utcnow())
        self._run_id = bundle.run_id
        self._progress.run_id = bundle.run_id  # only this run's Spark application is read
        return bundle

    def run(self) -> int:
        bundle = self.wait_for_bundle()
        session = self._attest(bundle)
        transport = self._transport_for(bundle)
        run_id, seq = bundle.run_id, 0
        final_since: float | None = None
        stopped_at: float | None = None
        try:
            while True:
                outcome, reason, outputs = self._outcome()
                ui = self.settings.bundle_dir / DRIVER_UI
                if ui.exists():  # the driver says where its REST API listens
                    self._progress.ui_url = ui.read_text().strip().rstrip("/")
                beat = {  # api.Heartbeat, as JSON
                    "run_id": run_id,
                    "seq": seq,
                    "at": utcnow().isoformat().replace("+00:00", "Z"),
                    "state": outcome or "running",
                    "progress": self._progress.read().to_json(),
                    "interval": float(self.settings.interval),
                    "final": outcome is not None,
                    "reason": reason,
                    "outputs": outputs,
                }
                seq += 1
                self._backlog.append(
                    SignedHeartbeat(session=session.token, jws=session.sign(canonical(beat)))
                )
                self._flush(transport)
                if outcome is not None:
                    final_since = final_since or time.monotonic()
                    late = time.monotonic() - final_since > self.settings.final_deadline
                    if not self._backlog or late:
                        if self.settings.wait_for_stop:
                            self._stop.wait()
                        return 0
                if stopped_at is not None or self._tick(early=outcome is None):
                    # Stopped: the outcome still goes out, within a short grace.
                    stopped_at = stopped_at or time.monotonic()
                    pending = outcome is not None or self._outcome()[0] is not None
                    if not pending or time.monotonic() - stopped_at > self.settings.stop_grace:
                        return 0
                    if outcome is not None:
                        time.sleep(min(1.0, self.settings.interval))  # then try the backlog again
        finally:
            transport.close()

    def _tick(self, early: bool) -> bool:
        """Wait one interval; True when stopped. With ``early``, the driver's outcome
        appearing ends the wait at once: the final heartbeat, which ends the run, goes
        out now rather than up to an interval later."""
        deadline = time.monotonic() + self.settings.interval
        outcome = self.settings.bundle_dir / DRIVER_OUTCOME
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(OUTCOME_POLL, remaining)):
                return True
            if early and outcome.exists():
                return False
        return False

    def _attest(self, bundle: SidecarBundle) -> AttestedSession:
        """Attest once; an unreachable control plane is retried, never fatal."""
        while True:
            session = self._session_for(bundle)
            try:
                session.attest()
                return session
            except ControlPlaneUnavailableError as exc:
                log.warning("attestation deferred: %s", exc.one_line())
                if self._stop.wait(self.settings.interval):
                    raise

    def _flush(self, transport: Transport) -> None:
        """Send the backlog oldest first; stop at the first failure and keep the rest."""
        while self._backlog:
            signed = self._backlog[0]
            try:
                ack = transport.send(signed)
            except ControlPlaneUnavailableError as exc:
                log.warning(
                    "control plane unreachable, %d heartbeats kept: %s",
                    len(self._backlog),
                    exc.message,
                )
                return
            except ControlPlaneError as exc:
                # Refused for good (replayed, finished run): drop it, keep the loop alive.
                log.warning("heartbeat refused: %s", exc.message)
                self._backlog.popleft()
                continue
            except JobRuntimeError as exc:  # a transport's own failure (e.g. Service Bus)
                log.warning("heartbeat not sent, %d kept: %s", len(self._backlog), exc.message)
                return
            self._backlog.popleft()
            self.sent += 1
            if ack.cancel and not self.cancelled and self._order_verified(ack):
                self.cancelled = self._stop_driver(ack.order)

    def _order_verified(self, ack: HeartbeatAck) -> bool:
        """A cancel stops the driver only if the control plane signed it for this run.

        The answer crossed the network (or a broker): an unsigned or forged cancel is
        logged and ignored, never obeyed.
        """
        if self._trust_root is None or self._run_id is None:
            return False
        try:
            verify_cancel(ack.order, self._trust_root, self._run_id, utcnow())
        except OrderError as exc:
            log.warning("ignored a cancel: %s", exc.one_line())
            return False
        return True

    def _outcome(self) -> tuple[str | None, str | None, list[dict[str, Any]]]:
        """The driver's last word, if written: outcome, failure code, published outputs.

        The driver holds no control-plane token: its outcome reaches the control plane
        only as this sidecar's final signed heartbeat, from the claiming pod's session.
        """
        path = self.settings.bundle_dir / DRIVER_OUTCOME
        try:
            obj = json.loads(path.read_text())
            outcome = obj.get("outcome")
        except (OSError, ValueError, AttributeError):
            return None, None, []
        if outcome not in ("succeeded", "failed", "cancelled"):
            return "failed", "driver.outcome_unreadable", []
        try:
            outputs: list[dict[str, Any]] = plain.check(  # api.OutputReport, each
                OUTPUTS, obj.get("outputs", []), "driver outcome outputs"
            )
            reason = obj.get("reason")
            reason = str(reason)[:300] if reason is not None else None
        except JobRuntimeError:
            return "failed", "driver.outcome_unreadable", []
        return outcome, reason, outputs

    def _stop_driver(self, order: Any) -> bool:
        """The verified order, for the driver to verify again and obey (``job.handoff``)."""
        try:
            hand_cancel_to_driver(self.settings.bundle_dir, order)
        except OSError as exc:
            log.warning("cancel ordered but not handed to the driver: %s", exc.strerror)
            return False  # try again on the next answer
        log.info("cancel ordered by the control plane: handed to the driver")
        return True
