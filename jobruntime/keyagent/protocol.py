"""The wire format both ends share: one UTF-8 JSON object per line (docs/keyagent-protocol.md).

The agent is the pod's local KMS: it wraps and unwraps Parquet KEKs and computes
and checks manifest MACs under a dataset's master key. No operation returns a
master key or anything derived from it that acts as a key. Requests::

    {"op": "unwrap", "dataset", "key_id", "wrapped": b64}     -> {"ok", "key": b64}        in, out
    {"op": "wrap", "dataset", "key_id", "key": b64}           -> {"ok", "wrapped": b64}    out
    {"op": "key_check", "dataset", "key_id"}                  -> {"ok", "key_check": hex}  in, out
    {"op": "mac", "dataset", "key_id", "digest": hex}         -> {"ok", "mac": hex}        out
    {"op": "check_mac", "dataset", "key_id", "digest", "mac"} -> {"ok", "valid": bool}     in, out
    {"op": "latest_version", "dataset"}          -> {"ok", "version": n|null, "digest"}    in, out
    {"op": "record_version", "dataset", "version", "digest"}  -> {"ok"}                    out
    {"op": "health"}                             -> {"ok", "datasets": [...], "cached": [...]}

"in, out": for the spec's inputs and outputs; "out": outputs only
(``keyagent.not_writable`` for an input). ``key_id`` must be the spec's key id of
the dataset (``keyagent.key_mismatch``); it is the AES-GCM AAD of a wrapped KEK
(``base64(nonce[12] || AES-256-GCM(master key, KEK, aad=key_id))``) and is bound
into the manifest MAC key. A KEK is 16, 24 or 32 bytes; ``digest`` and ``mac`` are
64 lowercase hex digits (a SHA-256 of a manifest body, an HMAC-SHA256). Any
failure -> ``{"ok": false, "code": "...", "message": "..."}``; an unknown op
(``get_key`` included: it no longer exists) is ``keyagent.bad_request``.

Lines are small and bounded (a request at most :data:`MAX_REQUEST` bytes) so that
neither side buffers more than it must, and a JVM client is a few lines.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, BinaryIO

from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.errors import BadRequestError, KeyAgentError, RequestTooLargeError

MAX_REQUEST = 4096  # bytes of one request line, newline included
MAX_RESPONSE = 64 * 1024  # health lists at most a few hundred dataset names

OP_UNWRAP = "unwrap"
OP_WRAP = "wrap"
OP_KEY_CHECK = "key_check"
OP_MAC = "mac"
OP_CHECK_MAC = "check_mac"
OP_HEALTH = "health"
OP_LATEST_VERSION = "latest_version"
OP_RECORD_VERSION = "record_version"

MAX_DATASET = 128  # characters of a dataset name
KEK_BYTES = (16, 24, 32)  # AES-128/192/256 key-encryption keys, as PME makes them
NONCE_BYTES, TAG_BYTES = 12, 16
WRAPPED_BYTES = tuple(NONCE_BYTES + n + TAG_BYTES for n in KEK_BYTES)
MAX_VERSION = 2**31 - 1  # a Java int

KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")  # the spec's key id pattern
HEX64 = re.compile(r"[0-9a-f]{64}")
MANIFEST_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


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
    except (ValueError, RecursionError):  # RecursionError: a line of 4096 "[" nests too deep
        raise BadRequestError("not a UTF-8 JSON line") from None
    if not isinstance(obj, dict):
        raise BadRequestError("not a JSON object")
    return obj


def error_body(exc: JobRuntimeError) -> dict[str, Any]:
    code = exc.remote_code if isinstance(exc, KeyAgentError) else exc.code
    return {"ok": False, "code": code, "message": exc.message}


# --- fields: each check names the field and the rule, never the value --------------------


def dataset_field(obj: Mapping[str, Any]) -> str:
    value = obj.get("dataset")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_DATASET:
        raise BadRequestError(f"dataset must be a name of 1 to {MAX_DATASET} characters")
    return value


def key_id_field(obj: Mapping[str, Any]) -> str:
    return _matching(obj, "key_id", KEY_ID, "a key id of 1 to 128 of [A-Za-z0-9._:/-]")


def hex64_field(obj: Mapping[str, Any], name: str) -> str:
    return _matching(obj, name, HEX64, "64 lowercase hex digits")


def digest_field(obj: Mapping[str, Any]) -> bytes:
    """A manifest body's SHA-256, sent as 64 lowercase hex digits."""
    return bytes.fromhex(hex64_field(obj, "digest"))


def manifest_digest_field(obj: Mapping[str, Any]) -> str:
    return _matching(obj, "digest", MANIFEST_DIGEST, '"sha256:" and 64 lowercase hex digits')


def version_field(obj: Mapping[str, Any]) -> int:
    value = obj.get("version")
    if type(value) is not int or not 0 < value <= MAX_VERSION:  # bool is an int: refused
        raise BadRequestError(f"version must be an integer from 1 to {MAX_VERSION}")
    return value


def base64_field(obj: Mapping[str, Any], name: str, sizes: tuple[int, ...]) -> bytes:
    """Canonical standard base64 (padded) of exactly one of ``sizes`` bytes."""
    value = obj.get(name)
    rule = f"{name} must be canonical base64 of {' or '.join(map(str, sizes))} bytes"
    if not isinstance(value, str) or len(value) > 4 * ((max(sizes) + 2) // 3):
        raise BadRequestError(rule)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(rule) from None
    if len(raw) not in sizes or base64.b64encode(raw).decode() != value:
        raise BadRequestError(rule)
    return raw


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _matching(obj: Mapping[str, Any], name: str, pattern: re.Pattern[str], rule: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadRequestError(f"{name} must be {rule}")
    return value
