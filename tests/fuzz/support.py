"""The fuzz property and the strategies that feed it.

The property (:func:`typed`): a parser given any input returns a value or raises the
project's typed error, a registered ``JobRuntimeError`` subclass with a stable code;
never another exception, and never more than a bounded amount of memory.

Strategies mutate valid documents as well as drawing random bytes, so most inputs get
past the first check: JSON trees with fields replaced, removed, added, retyped,
duplicated or nested deeply; then bytes flipped, cut, spliced or repeated.
"""

from __future__ import annotations

import copy
import json
import re
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from jobruntime.errors import JobRuntimeError, all_error_types

T = TypeVar("T")
Path = tuple[str | int, ...]

MEMORY_BUDGET = 64 * 1024 * 1024
"""Peak bytes (Python allocations) one parse may take: inputs are at most a few MiB."""
_CODE = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$")


class Refused:
    """What a parser raised, once it is known to be a typed error."""

    def __init__(self, error: BaseException, code: str) -> None:
        self.error, self.code = error, code

    def __repr__(self) -> str:
        return f"Refused({self.code})"


def registered_codes() -> set[str]:
    return {cls.code for cls in all_error_types()}


def typed(
    fn: Callable[..., T],
    *args: Any,
    also: tuple[type[BaseException], ...] = (),
    code_of: Callable[[BaseException], str] | None = None,
    **kwargs: Any,
) -> T | Refused:
    """``fn(*args)``'s value, or ``Refused`` for a typed error; anything else fails the test.

    ``also``: a parser whose contract names another typed error (the control plane's
    ``ServiceError`` carries a status and a stable code too); ``code_of`` reads its code.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    error: BaseException | None = None
    try:
        value = fn(*args, **kwargs)
    except JobRuntimeError as exc:
        error = exc
    except also as exc:
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        if started:
            tracemalloc.stop()
        assert peak < MEMORY_BUDGET, f"{fn.__name__} peaked at {peak} bytes"
    if error is None:
        _note(fn, "accepted")
        return value
    if isinstance(error, JobRuntimeError):
        assert type(error) in all_error_types(), f"{type(error).__name__} is not registered"
        assert error.code in registered_codes()
        assert "\n" not in error.message, "error messages are one line"
        code = error.code
    else:
        code = code_of(error) if code_of else type(error).__name__
    assert _CODE.fullmatch(code), f"unstable code {code!r}"
    _note(fn, code)
    return Refused(error, code)


def _note(fn: Callable[..., Any], outcome: str) -> None:
    """Outcomes per parser in ``--hypothesis-show-statistics``: how deep the inputs got."""
    if currently_in_test_context():
        event(f"{getattr(fn, '__name__', fn)}: {outcome}")


# --- JSON values ----------------------------------------------------------------------

INTERESTING_INTS = (0, 1, -1, 2**31 - 1, 2**31, 2**53, 2**53 + 1, -(2**53) - 1, 2**63, 10**30)
INTERESTING_STRINGS = (
    "",
    " ",
    "\x00",
    "\ud800",  # a lone surrogate: valid JSON escape, not Unicode text
    "\U0001f600",
    "é",
    "../../etc/passwd",
    "file:///data/a",
    "az://acct/container/path",
    "sha256:" + "0" * 64,
    "0" * 64,
    "run-abcdef-1234",
    "org-a",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2024-02-30T00:00:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01T00:00:00+25:00",
    "2024-01-01 00:00:00z",
    "NaN",
    "true",
    "null",
)

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(INTERESTING_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(INTERESTING_STRINGS),
    st.integers(100, 5000).map(lambda n: "a" * n),  # over every field's length limit
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def deep(depth: int, leaf: Any = 0, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def paths(tree: Any, here: Path = ()) -> list[Path]:
    """Every place in a JSON tree, the root included."""
    found = [here]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*here, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += paths(value, (*here, index))
    return found


def get(tree: Any, path: Path) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def put(tree: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    get(tree, path[:-1])[path[-1]] = value
    return tree


def remove(tree: Any, path: Path) -> Any:
    if not path:
        return tree
    parent = get(tree, path[:-1])
    del parent[path[-1]]
    return tree


def _index(draw: st.DrawFn, size: int) -> int:
    """A position in something of ``size`` (> 0), drawn independently of ``size``: inputs
    built from live state (a nonce, a counter) may change length between replays."""
    return draw(st.integers(0, 2**16)) % size


@st.composite
def _string_variant(draw: st.DrawFn, value: str) -> str:
    how = draw(st.sampled_from(["append", "cut", "upper", "char", "repeat", "replace"]))
    if how == "append":
        return value + draw(st.text(min_size=1, max_size=4))
    if how == "cut":
        return value[: _index(draw, len(value) or 1)]
    if how == "upper":
        return value.upper()
    if how == "char" and value:
        at = _index(draw, len(value))
        return value[:at] + draw(st.characters()) + value[at + 1 :]
    if how == "repeat":  # at most about 100 000 characters, however often it repeats
        return value * min(draw(st.integers(2, 2000)), max(2, 100_000 // max(len(value), 1)))
    return str(draw(st.sampled_from(INTERESTING_STRINGS)))


@st.composite
def _mutate_once(draw: st.DrawFn, tree: Any) -> Any:
    where = draw(st.sampled_from(paths(tree)))
    here = get(tree, where)
    how = draw(
        st.sampled_from(
            ["replace", "remove", "add", "retype", "copy", "nest", "string", "number", "wrap"]
        )
    )
    if how == "replace":
        return put(tree, where, draw(json_values))
    if how == "remove":
        return remove(tree, where)
    if how == "add":
        if isinstance(here, dict):
            here[draw(st.text(max_size=10))] = draw(json_values)
        elif isinstance(here, list):
            here.append(copy.deepcopy(draw(st.sampled_from(here))) if here else draw(json_values))
        return tree
    if how == "retype":
        return put(tree, where, draw(st.sampled_from([None, True, 0, 1.5, "", [], {}, [here]])))
    if how == "copy":  # another part of the same document, where it does not belong
        return put(tree, where, copy.deepcopy(get(tree, draw(st.sampled_from(paths(tree))))))
    if how == "nest":
        kind = draw(st.sampled_from(["list", "dict"]))
        return put(tree, where, deep(draw(st.integers(20, 40)), here, kind))
    if how == "string" and isinstance(here, str):
        return put(tree, where, draw(_string_variant(here)))
    if how == "number" and isinstance(here, int | float):
        return put(tree, where, draw(st.sampled_from(INTERESTING_INTS)))
    if how == "wrap":
        return put(tree, where, [here])
    return tree


@st.composite
def mutated_tree(draw: st.DrawFn, doc: Any, max_mutations: int = 3) -> Any:
    """A deep copy of ``doc`` with one to ``max_mutations`` structural changes."""
    tree = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_mutations))):
        tree = draw(_mutate_once(tree))
    return tree


def dump(tree: Any) -> bytes:
    return json.dumps(tree, separators=(",", ":")).encode()


@st.composite
def text_mutation(draw: st.DrawFn, data: bytes, keys: Sequence[str] = ()) -> bytes:
    """JSON-text changes a tree cannot express: duplicate keys, other encodings, BOMs."""
    how = draw(st.sampled_from(["dup", "bom", "utf16", "ws", "constant", "bigint"]))
    if how == "dup" and keys and data.startswith(b"{"):
        key = draw(st.sampled_from(list(keys)))
        return b"{" + dump(key) + b":" + dump(draw(json_values)) + b"," + data[1:]
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if how == "ws":
        return b" \n\t" + data + b"\r\n"
    if how == "constant" and b":" in data:
        at = data.index(b":") + 1
        word = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0"]))
        return data[:at] + word + b"," + b'"z":' + data[at:]
    if how == "bigint" and b":" in data:
        at = data.index(b":") + 1
        return data[:at] + b"1" * draw(st.integers(17, 5000)) + b"," + b'"z":' + data[at:]
    return data


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """Bit flips, truncation, deletion, insertion, splicing and repetition of a range."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "set", "cut", "delete", "insert", "repeat"]))
        if not out:
            out += draw(st.binary(min_size=1, max_size=16))
            continue
        at = _index(draw, len(out))
        if how == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            out[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x5B]))
        elif how == "cut":
            del out[at:]
        elif how == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        elif how == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            end = min(len(out), at + draw(st.integers(1, 16)))
            out[at:at] = out[at:end] * draw(st.integers(1, 512))
    return bytes(out)


PATHOLOGICAL_TOKENS = (b"[", b"{", b'{"a":', b'"', b'\\"', b'"\\', b"\\", b"[1,", b"0", b"\xff")


@st.composite
def pathological(draw: st.DrawFn) -> bytes:
    """One token repeated up to 100 KiB: deep nesting, unterminated strings, escape runs.

    Large enough that a parser quadratic in its input misses the deadline.
    """
    token = draw(st.sampled_from(PATHOLOGICAL_TOKENS))
    count = draw(st.integers(1, 100_000 // len(token)))
    return draw(st.binary(max_size=8)) + token * count + draw(st.binary(max_size=8))


def json_inputs(doc: Any, keys: Sequence[str] = ()) -> st.SearchStrategy[bytes]:
    """Bytes for a JSON parser: mostly mutations of ``doc``, some random or pathological."""
    trees = mutated_tree(doc).map(dump)
    return st.one_of(
        st.just(dump(doc)),
        trees,
        trees.flatmap(lambda data: text_mutation(data, keys)),
        st.just(dump(doc)).flatmap(byte_mutation),
        trees.flatmap(byte_mutation),
        st.binary(max_size=256),
        json_values.map(dump),
        pathological(),
    )
