"""The storage interface encrypted datasets are read from and written to.

Paths are relative to the storage root and "/"-separated on every backend, so a dataset
layout written locally reads the same from Azure Blob. They are validated in one place
(``check_path``) so that no backend can be talked into leaving its root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from jobruntime.storage.errors import (
    StorageError,
    StorageExistsError,
    StorageNotFoundError,
    StoragePathError,
    StorageRangeError,
)

# The errors are part of the interface: importable from here along with ``Storage``.
__all__ = [
    "TEMP_PREFIX",
    "ObjectInfo",
    "Storage",
    "StorageError",
    "StorageExistsError",
    "StorageNotFoundError",
    "StoragePathError",
    "StorageRangeError",
    "check_delete_prefix",
    "check_path",
    "check_prefix",
    "check_range",
]

# Local backends stage writes in files with this name prefix; no path segment may start
# with it, so staged files are never confused with objects.
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True, order=True)
class ObjectInfo:
    """One object under the root: its relative path and size in bytes."""

    path: str
    size: int


@runtime_checkable
class Storage(Protocol):
    """Flat object storage under a root ``uri``; all paths are relative to that root."""

    @property
    def uri(self) -> str:
        """Where the root is, without credentials."""
        ...

    def read(self, path: str) -> bytes:
        """The whole object; ``StorageNotFoundError`` if it does not exist."""
        ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``, short at the end, as a file read is."""
        ...

    def size(self, path: str) -> int:
        """The object's size in bytes."""
        ...

    def exists(self, path: str) -> bool:
        """Whether the object exists (directories and prefixes are not objects)."""
        ...

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose path starts with ``prefix`` (a string prefix), sorted."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Create or replace the object; readers see the old or the new bytes, never a mix."""
        ...

    def create(self, path: str, data: bytes) -> bool:
        """Create the object only if absent, atomically; False if it already existed."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``; ``StorageExistsError`` if ``dst`` exists."""
        ...

    def delete(self, path: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under a non-empty ``prefix``; how many were removed."""
        ...


def _check_segments(text: str, segments: list[str]) -> None:
    for segment in segments:
        if segment == "":
            raise StoragePathError(f"path {text!r} has an empty segment")
        if segment in (".", ".."):
            raise StoragePathError(f"path {text!r} has a {segment!r} segment")
        if segment.startswith(TEMP_PREFIX):
            raise StoragePathError(f"path {text!r}: names starting {TEMP_PREFIX!r} are reserved")


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise StoragePathError(f"a path must be a string, not {type(text).__name__}")
    if text.startswith("/"):
        raise StoragePathError(f"path {text!r} is absolute; paths are relative to the root")
    if "\\" in text:
        raise StoragePathError(f"path {text!r} contains a backslash; use '/'")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise StoragePathError(f"path {text!r} contains a control character")
    return text


def check_path(path: object) -> str:
    """``path`` if it names an object under the root, else ``StoragePathError``."""
    text = _check_text(path)
    if text == "":
        raise StoragePathError("path is empty")
    _check_segments(text, text.split("/"))
    return text


def check_prefix(prefix: object) -> str:
    """A listing prefix: "" or a valid path, optionally ending in "/"."""
    text = _check_text(prefix)
    if text:
        check_path(text.removesuffix("/"))
    return text


def check_delete_prefix(prefix: object) -> str:
    """A prefix for ``delete_prefix``: "" is refused, so a slip cannot empty the root."""
    text = check_prefix(prefix)
    if not text:
        raise StoragePathError("refusing to delete everything under the root: give a prefix")
    return text


def check_range(offset: int, length: int) -> None:
    """Refuse negative (or non-integer) offsets and lengths before any I/O."""
    for name, value in (("offset", offset), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StorageRangeError(f"{name} must be a non-negative integer, got {value!r}")
