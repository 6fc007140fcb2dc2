"""Plain-JSON shapes: strict checks of parsed JSON for processes that cannot afford pydantic.

The pod's sidecars (key agent, heartbeat) re-verify everything they are given, but
pydantic alone costs them about 11 MB of resident memory. A :class:`Shape` checks a
value that ``json.loads`` produced with pydantic's *strict* rules: the right JSON type
and nothing coerced (no ``"2"`` for 2, no ``1`` for ``true``, no number for a time),
every pattern and bound, unknown fields refused. So a shape accepts a subset of what
the matching pydantic model accepts, and every document our own code writes;
``tests/test_plain_schemas.py`` holds each shape to its model.

Errors name the field and the rule, never the value (values may be secret).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from jobruntime.spec import rules

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


class Invalid(Exception):
    """One rule a value breaks: where (a dotted path) and what rule, never the value."""

    def __init__(self, at: str, reason: str) -> None:
        super().__init__(f"{at or '<root>'}: {reason}")
        self.at, self.reason = at, reason


def _at(at: str, key: object) -> str:
    return f"{at}.{key}" if at else str(key)


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class Shape:
    """A rule for one JSON value; ``check`` returns the value as the program uses it."""

    def check(self, value: Any, at: str = "") -> Any:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON Schema fragment, compared with the pydantic model's by the tests."""
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Shape):
    pattern: str | None = None
    max_length: int | None = None
    min_length: int = 0
    after: Callable[[str], str] | None = None
    """A further rule (raises ValueError), like pydantic's ``AfterValidator``."""

    def check(self, value: Any, at: str = "") -> str:
        if not isinstance(value, str):
            raise Invalid(at, "should be a string")
        checked: str = value
        if len(checked) < self.min_length:
            raise Invalid(at, f"should have at least {self.min_length} characters")
        if self.max_length is not None and len(checked) > self.max_length:
            raise Invalid(at, f"should have at most {self.max_length} characters")
        if self.pattern is not None and not _regex(self.pattern).fullmatch(checked):
            raise Invalid(at, f"should match pattern {self.pattern!r}")
        if self.after is not None:
            try:
                checked = self.after(checked)
            except ValueError as exc:
                raise Invalid(at, str(exc)) from None
        return checked

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.min_length:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


@dataclass(frozen=True)
class Integer(Shape):
    """A JSON integer (never a boolean, a float or a string of digits)."""

    ge: int | None = None
    le: int | None = None

    def check(self, value: Any, at: str = "") -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(at, "should be an integer")
        if self.ge is not None and value < self.ge:
            raise Invalid(at, f"should be at least {self.ge}")
        if self.le is not None and value > self.le:
            raise Invalid(at, f"should be at most {self.le}")
        return value

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.ge is not None:
            out["minimum"] = self.ge
        if self.le is not None:
            out["maximum"] = self.le
        return out


@dataclass(frozen=True)
class Number(Shape):
    """A finite JSON float (an integer is an :class:`Integer`, not a number)."""

    def check(self, value: Any, at: str = "") -> float:
        if not isinstance(value, float):
            raise Invalid(at, "should be a float")
        if not math.isfinite(value):
            raise Invalid(at, "should be finite")
        return value

    def describe(self) -> dict[str, Any]:
        return {"type": "number"}


@dataclass(frozen=True)
class Boolean(Shape):
    def check(self, value: Any, at: str = "") -> bool:
        if not isinstance(value, bool):
            raise Invalid(at, "should be a boolean")
        return value

    def describe(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Timestamp(Shape):
    """An RFC 3339 date-time string; ``utc``: with an offset, returned in UTC."""

    utc: bool = True

    def check(self, value: Any, at: str = "") -> datetime:
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise Invalid(at, "should be an RFC 3339 date-time")
        text = value.upper().replace(" ", "T").replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise Invalid(at, "should be a valid date-time") from None
        if not self.utc:
            return parsed
        try:
            return rules.utc(parsed)
        except ValueError as exc:
            raise Invalid(at, str(exc)) from None

    def describe(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Const(Shape):
    """Exactly this JSON value, of this JSON type."""

    value: str | int

    def check(self, value: Any, at: str = "") -> Any:
        if type(value) is not type(self.value) or value != self.value:
            raise Invalid(at, f"should be {self.value!r}")
        return value

    def describe(self) -> dict[str, Any]:
        return {"const": self.value}


@dataclass(frozen=True)
class OneOf(Shape):
    """One of these strings."""

    values: tuple[str, ...]

    def check(self, value: Any, at: str = "") -> str:
        if not isinstance(value, str) or value not in self.values:
            raise Invalid(at, f"should be one of {', '.join(self.values)}")
        return value

    def describe(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


@dataclass(frozen=True)
class Nullable(Shape):
    inner: Shape

    def check(self, value: Any, at: str = "") -> Any:
        return None if value is None else self.inner.check(value, at)

    def describe(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.describe(), {"type": "null"}]}


@dataclass(frozen=True)
class AnyOf(Shape):
    """The first option that accepts the value (options of distinct JSON types)."""

    options: tuple[Shape, ...]

    def check(self, value: Any, at: str = "") -> Any:
        for option in self.options:
            try:
                return option.check(value, at)
            except Invalid:
                continue
        raise Invalid(at, "matches none of the allowed types")

    def describe(self) -> dict[str, Any]:
        return {"anyOf": [o.describe() for o in self.options]}


@dataclass(frozen=True)
class ListOf(Shape):
    item: Shape
    min_length: int = 0
    max_length: int | None = None

    def check(self, value: Any, at: str = "") -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(at, "should be a list")
        if len(value) < self.min_length:
            raise Invalid(at, f"should have at least {self.min_length} items")
        if self.max_length is not None and len(value) > self.max_length:
            raise Invalid(at, f"should have at most {self.max_length} items")
        return [self.item.check(v, _at(at, i)) for i, v in enumerate(value)]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.item.describe()}
        if self.min_length:
            out["minItems"] = self.min_length
        if self.max_length is not None:
            out["maxItems"] = self.max_length
        return out


@dataclass(frozen=True)
class MapOf(Shape):
    key: Shape
    value: Shape
    max_length: int | None = None

    def check(self, value: Any, at: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(at, "should be an object")
        if self.max_length is not None and len(value) > self.max_length:
            raise Invalid(at, f"should have at most {self.max_length} items")
        return {
            self.key.check(k, _at(at, "[key]")): self.value.check(v, _at(at, k))
            for k, v in value.items()
        }

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "additionalProperties": self.value.describe(),
            "propertyNames": self.key.describe(),
        }
        if self.max_length is not None:
            out["maxProperties"] = self.max_length
        return out


@dataclass(frozen=True)
class JsonObject(Shape):
    """Any JSON object (its contents are checked by whoever reads them)."""

    def check(self, value: Any, at: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(at, "should be an object")
        return dict(value)

    def describe(self) -> dict[str, Any]:
        return {"type": "object"}


_MISSING: Any = object()


@dataclass(frozen=True)
class Field:
    shape: Shape
    default: Any = _MISSING
    """Used when the field is absent; a callable is called for a fresh value."""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True)
class Record(Shape):
    """A JSON object with exactly these fields (unknown ones refused), then its rules.

    A rule takes the checked fields and raises ValueError, like a pydantic model
    validator in ``after`` mode.
    """

    fields: Mapping[str, Field]
    rules: tuple[Callable[[dict[str, Any]], None], ...] = field(default=())

    def check(self, value: Any, at: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(at, "should be an object")
        for key in value:
            if key not in self.fields:
                raise Invalid(_at(at, key), "extra fields are not permitted")
        out: dict[str, Any] = {}
        for name, spec in self.fields.items():
            if name in value:
                out[name] = spec.shape.check(value[name], _at(at, name))
            elif spec.required:
                raise Invalid(_at(at, name), "field required")
            else:
                out[name] = spec.default() if callable(spec.default) else spec.default
        for rule in self.rules:
            try:
                rule(out)
            except ValueError as exc:
                raise Invalid(at, str(exc)) from None
        return out

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {name: f.shape.describe() for name, f in self.fields.items()},
            "additionalProperties": False,
        }
        required = sorted(name for name, f in self.fields.items() if f.required)
        if required:
            out["required"] = required
        return out
