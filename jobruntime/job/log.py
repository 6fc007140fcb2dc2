"""The job's logger: structured lines that carry names and counts, never row values.

A job logs with ``ctx.log.info("joined", rows=n)``. In a confidential run the log
leaves the TEE (pod logs, the operator's terminal), so what a line may carry is
decided by code the data owners approved, not by the call site:

- the event name must be a short lowercase identifier, or the line says ``<event>``
  (an f-string event such as ``f"bad {cid}"`` would otherwise carry a value);
- a field is kept only if its *name* is allowed: :data:`DEFAULT_FIELDS`, plus the
  names the job module declares in ``LOG_FIELDS`` (part of the approved digest);
  other fields are dropped and only their number is logged;
- a kept field's value must be a number, a boolean, ``None`` or a short identifier
  (numbers only for the counting defaults such as ``rows``), or it is logged as
  ``<type>``.

There is no escape hatch: a job that needs to see values runs on its own data with
``JOBRUNTIME_DEBUG=1`` in development mode (``JOBRUNTIME_DEV=1``), never in a
confidential run.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from jobruntime.job.errors import ModuleLoadError

EVENT = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.:/-]{0,64}$")
EVENT_PLACEHOLDER = "<event>"
# Names whose values describe the run's shape (sizes, counts, timings, which dataset),
# not its rows. Anything else must be declared by the module, where owners read it.
# The counting ones take numbers only: ``rows=cid`` must not print an identifier.
NUMBER_FIELDS = frozenset(
    {
        "attempt",
        "batches",
        "bytes",
        "columns",
        "count",
        "files",
        "partitions",
        "rows",
        "seconds",
        "stage",
        "version",
    }
)
DEFAULT_FIELDS = NUMBER_FIELDS | {"dataset", "step"}
# Keys every line has; a field may not shadow them.
RESERVED = frozenset({"run_id", "job", "event", "dropped_fields"})


def _scrub(value: Any, numbers_only: bool = False) -> Any:
    """A value that is safe to print as is, or its type name in angle brackets."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if not numbers_only and isinstance(value, str) and _SAFE_TEXT.fullmatch(value):
        return value
    return f"<{type(value).__name__}>"


class JobLogger:
    """``ctx.log``: JSON lines whose event names and field names are allow-listed.

    ``fields`` are the names the job module declares (``LOG_FIELDS``); a name that
    is not a lowercase identifier, or shadows a reserved key, is refused when the
    logger is built, so a bad declaration fails the run before any data is read.
    """

    def __init__(self, run_id: str, job_id: str, fields: Iterable[str] = ()) -> None:
        if isinstance(fields, str):  # LOG_FIELDS = "rows" would allow r, o, w and s
            raise ModuleLoadError("LOG_FIELDS must be a tuple of names, not a string")
        declared = list(fields)
        bad = [f for f in declared if not (isinstance(f, str) and FIELD_NAME.fullmatch(f))]
        reserved = [f for f in declared if f in RESERVED]
        if bad or reserved:
            raise ModuleLoadError(
                f"LOG_FIELDS has {len(bad) + len(reserved)} names that are not lowercase "
                "identifiers of up to 32 characters, or are reserved (run_id, job, event, "
                "dropped_fields)"
            )
        self._log = logging.getLogger(f"jobruntime.job.{job_id}")
        self._base = {"run_id": run_id, "job": job_id}
        self.fields: frozenset[str] = DEFAULT_FIELDS | frozenset(declared)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        name = event if isinstance(event, str) and EVENT.fullmatch(event) else EVENT_PLACEHOLDER
        kept = {
            k: _scrub(v, numbers_only=k in NUMBER_FIELDS)
            for k, v in fields.items()
            if k in self.fields
        }
        line: dict[str, Any] = {**self._base, "event": name, **kept}
        if len(kept) < len(fields):
            line["dropped_fields"] = len(fields) - len(kept)
        self._log.log(level, json.dumps(line))

    def info(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at INFO with the allowed ``fields``."""
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at WARNING with the allowed ``fields``."""
        self._emit(logging.WARNING, event, fields)
