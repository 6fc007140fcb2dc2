"""The wire format both ends share: one UTF-8 JSON object per line.

Requests::

    {"op": "get_key", "dataset": "<name>"}  -> {"ok": true, "dataset": "<name>", "key": "<base64>"}
    {"op": "health"}                        -> {"ok": true, "datasets": [...], "cached": [...]}
    {"op": "latest_version", "dataset": "<name>"}
                                            -> {"ok": true, "version": n or null, "digest": ...}
    {"op": "record_version", "dataset": "<name>", "version": n, "digest": "sha256:..."}
                                            -> {"ok": true}

The version ops pass through to the control plane's record of each dataset's
latest manifest, so readers refuse a rolled-back dataset and writers publish.

Any failure -> ``{"ok": false, "code": "...", "message": "..."}``. Lines are small
and bounded so that neither side buffers more than it must, and so that a JVM
client can implement the same thing in a few lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, BinaryIO

from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.errors import BadRequestError, KeyAgentError, RequestTooLargeError

MAX_REQUEST = 4096  # bytes of one request line, newline included
MAX_RESPONSE = 64 * 1024  # health lists at most a few hundred dataset names

OP_GET_KEY = "get_key"
OP_HEALTH = "health"
OP_LATEST_VERSION = "latest_version"
OP_RECORD_VERSION = "record_version"


def encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def read_line(stream: BinaryIO, limit: int) -> bytes | None:
    """One line of at most ``limit`` bytes, or None at end of stream.

    Reading ``limit + 1`` bytes tells an over-long line from one that is exactly
    at the limit without buffering the rest of it.
    """
    line = stream.readline(limit + 1)
    if not line:
        return None
    if len(line) > limit:
        raise RequestTooLargeError(f"line longer than {limit} bytes")
    return line


def decode(line: bytes) -> dict[str, Any]:
    """A JSON object, or BadRequestError (the same check serves requests and responses)."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequestError("not a UTF-8 JSON line") from None
    if not isinstance(obj, dict):
        raise BadRequestError("not a JSON object")
    return obj


def error_body(exc: JobRuntimeError) -> dict[str, Any]:
    code = exc.remote_code if isinstance(exc, KeyAgentError) else exc.code
    return {"ok": False, "code": code, "message": exc.message}
