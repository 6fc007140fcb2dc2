"""Bytes in and out: size and depth limits before parsing, RFC 8785 canonical JSON.

Limits run on raw bytes before ``json.loads`` so a hostile spec cannot make the
parser recurse or allocate without bound.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import rfc8785

from jobruntime.errors import SpecSchemaError, SpecTooDeepError, SpecTooLargeError

if TYPE_CHECKING:  # pydantic is imported only where a model is used: never by a sidecar
    from pydantic import BaseModel, ValidationError

MAX_SPEC_BYTES = 1024 * 1024
MAX_DEPTH = 32

# A string ends at its closing quote or, unterminated, at the end of the data: a string
# that could fail to match would be retried from every quote inside it (quadratic time).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
MAX_INT = 2**53 - 1
"""I-JSON's (and so RFC 8785's) exact integers: +-(2^53 - 1)."""

M = TypeVar("M", bound="BaseModel")


def check_limits(data: bytes, what: str, max_bytes: int = MAX_SPEC_BYTES) -> None:
    """Refuse oversized or deeply nested JSON without parsing it."""
    if len(data) > max_bytes:
        raise SpecTooLargeError(f"{what} is {len(data)} bytes, over the {max_bytes}-byte limit")
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise SpecTooDeepError(f"{what} nests deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def load_json(data: bytes, what: str, max_bytes: int = MAX_SPEC_BYTES) -> Any:
    """Limits, then JSON that RFC 8785 carries faithfully: no duplicate keys, NaN or Infinity,
    integers within +-(2^53 - 1), no lone surrogates (so what is checked is what is
    canonicalised and signed: ``rfc8785`` refuses all of these).

    UTF-8 only (RFC 8259 for exchanged JSON): ``json.loads`` on bytes would also take
    UTF-16 or UTF-32, whose bytes the depth check above cannot read, so a deep document
    in UTF-16 would reach the parser's recursion limit instead of ``spec.too_deep``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecSchemaError(f"{what} is not UTF-8 JSON (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise SpecSchemaError(f"{what} starts with a byte-order mark")
    check_limits(data, what, max_bytes)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise SpecSchemaError(f"{what} repeats a key in an object")
        return dict(items)

    def integer(text: str) -> int:
        # Length first: int() refuses over 4300 digits with a bare ValueError.
        if len(text) > len(str(-MAX_INT)) or abs(value := int(text)) > MAX_INT:
            raise SpecSchemaError(f"{what} holds an integer outside +-(2^53 - 1)")
        return value

    def constant(text: str) -> Any:
        raise SpecSchemaError(f"{what} holds {text}, which is not JSON")

    try:
        value = json.loads(
            text, object_pairs_hook=pairs, parse_int=integer, parse_constant=constant
        )
    except RecursionError:  # not reachable past the depth check; never a crash regardless
        raise SpecTooDeepError(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecSchemaError(
            f"{what} is not JSON: {type(exc).__name__} at byte {_pos(exc)}"
        ) from None
    # "\ud800" is a valid JSON escape but no Unicode text: only such an escape makes one.
    if _SURROGATE_ESCAPE.search(data) and not _is_unicode(value):
        raise SpecSchemaError(f"{what} holds a lone surrogate, which is not Unicode text")
    return value


def _is_unicode(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_model(model: type[M], data: bytes, what: str) -> M:
    """Limits, then JSON, then the strict model; errors name fields, never values."""
    return validate_model(model, load_json(data, what), what)


def validate_model(model: type[M], obj: Any, what: str) -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise SpecSchemaError(f"{what} does not match the schema: {describe(exc)}") from None


def describe(exc: ValidationError, limit: int = 3) -> str:
    """Field paths and reasons only: input values may be secret."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def canonical(obj: BaseModel | Any) -> bytes:
    """RFC 8785 canonical JSON of a model or a plain JSON value."""
    if "pydantic" in sys.modules:  # else nothing here can be a model
        from pydantic import BaseModel

        if isinstance(obj, BaseModel):
            obj = obj.model_dump(mode="json")
    value: Any = obj
    return bytes(rfc8785.dumps(value))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pos(exc: Exception) -> int:
    return int(getattr(exc, "pos", getattr(exc, "start", 0)))
