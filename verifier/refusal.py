"""A refusal the operator can see: a compact termination message, and a report upstream.

The Spark operator derives an application's state from the driver container only, so
an init container's failure would read "driver container status missing". The
verifier therefore writes its refusal as compact JSON to the termination-message
path (``kubectl describe pod``), and reports it to the control plane
(``jobruntime runs status`` shows it). Only the run id, role, code, exit code, step
and the one-line message: error messages never quote data, keys or tokens.
"""

from __future__ import annotations

import json
import logging
from typing import Literal

from jobruntime.controlplane.api import VerifierRefusal
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.errors import JobRuntimeError

log = logging.getLogger("jobruntime.verifier")

# The verifier's numbered checks by exit code (docs/verifier.md); exit 10 is step 1
# (envelope) except for the schema, which is read only after the signature (step 3).
STEP_OF_EXIT = {10: 1, 11: 2, 12: 4, 13: 5, 14: 6, 16: 7, 17: 8, 18: 9, 15: 10}
REPORT_TIMEOUT = 5.0


def step_of(exc: JobRuntimeError) -> int | None:
    if exc.code == "spec.schema":
        return 3
    return STEP_OF_EXIT.get(exc.exit_code)


def refusal_of(exc: JobRuntimeError, role: Literal["driver", "executor"]) -> VerifierRefusal:
    return VerifierRefusal(role=role, code=exc.code, exit_code=exc.exit_code, step=step_of(exc))


def termination_message(run_id: str, role: str, line: str, exc: JobRuntimeError | None) -> str:
    """Compact JSON; ``line`` is the one-line failure every command prints."""
    fields: dict[str, object] = {"run_id": run_id, "role": role, "error": line}
    if exc is not None:
        fields.update(code=exc.code, exit_code=exc.exit_code, step=step_of(exc))
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


def report(client: ControlPlaneClient, run_id: str, refusal: VerifierRefusal) -> None:
    """Best effort: a control plane that cannot be reached is itself the reason, often."""
    try:
        client.report_refusal(run_id, refusal)
    except JobRuntimeError as exc:
        log.warning("could not report the refusal to the control plane: %s", exc.code)
