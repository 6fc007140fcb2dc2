"""The job's logger: structured lines that carry names and counts, never row values.

A job logs with ``ctx.log.info("joined", rows=n)``; values that are not numbers,
booleans or short identifiers are replaced by their type name unless the job
passes ``reveal=True`` for that call (its choice, and it shows in the code).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.:/-]{0,64}$")


def _scrub(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str) and _SAFE_TEXT.match(value):
        return value
    return f"<{type(value).__name__}>"


class JobLogger:
    def __init__(self, run_id: str, job_id: str) -> None:
        self._log = logging.getLogger(f"jobruntime.job.{job_id}")
        self._base = {"run_id": run_id, "job": job_id}

    def _emit(self, level: int, event: str, reveal: bool, fields: dict[str, Any]) -> None:
        values = fields if reveal else {k: _scrub(v) for k, v in fields.items()}
        self._log.log(level, json.dumps({**self._base, "event": event, **values}, default=str))

    def info(self, event: str, *, reveal: bool = False, **fields: Any) -> None:
        self._emit(logging.INFO, event, reveal, fields)

    def warning(self, event: str, *, reveal: bool = False, **fields: Any) -> None:
        self._emit(logging.WARNING, event, reveal, fields)
