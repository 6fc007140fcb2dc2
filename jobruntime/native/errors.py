"""A refusal raised in the JVM (``jobruntime.kms.Refusal``), back as the runtime's typed error.

The jar's refusals carry the runtime's stable codes (``dataset.file_corrupt``,
``keyagent.not_in_spec``, ...) and messages that name datasets, files and key ids only.
Spark wraps them (a task failure inside a job failure); :func:`typed` walks the Java
cause chain, reading class names, codes and those messages only, so the driver reports
a native refusal with the same code and exit code as the Python data source's.

Parquet's own ``TagVerificationException`` (a module that fails AES-GCM authentication in
a file whose footer digest was verified: an altered part) is ``dataset.file_corrupt``,
named by the file Spark's error names; so is any other failure Spark reports reading one
of a dataset's parts (``FAILED_READ_FILE``): its footer was verified, so a part that does
not decode was altered (a module's unauthenticated length prefix, say) or damaged.
"""

from __future__ import annotations

import re
from typing import Any

from jobruntime.dataset.errors import FileCorruptError, FileMissingError
from jobruntime.errors import JobRuntimeError, all_error_types
from jobruntime.keyagent.errors import KeyAgentError, error_for

_REFUSAL_CLASSES = ("jobruntime.kms.Refusal", "jobruntime.kms.Refusal$Denied")
_TAG_FAILURE = "org.apache.parquet.crypto.TagVerificationException"
_PART = re.compile(r"file:(?://)?(/[^\s]*?)/(v[0-9]{6}-[0-9a-f]{8}/part-[0-9]{5}\.parquet)")
_DEPTH = 16


def _java_exception(exc: BaseException) -> Any:
    for name in ("java_exception", "_origin"):  # Py4JJavaError; PySpark's captured exceptions
        found = getattr(exc, name, None)
        if found is not None:
            return found
    return None


def typed(exc: BaseException) -> JobRuntimeError | None:
    """The typed error of the first JVM refusal in ``exc``'s Java cause chain, or None."""
    current = _java_exception(exc)
    seen = 0
    messages: list[str] = []
    kinds: set[str] = set()
    try:
        while current is not None and seen < _DEPTH:
            kind = current.getClass().getName()
            if kind in _REFUSAL_CLASSES:
                return by_code(str(current.code()), str(current.getMessage()))
            if kind == _TAG_FAILURE:
                return _altered(messages)
            kinds.add(kind)
            messages.append(str(current.getMessage()))
            current = current.getCause()
            seen += 1
    except Exception:  # the JVM is gone, or an object is not what it seemed
        return None
    return _undecodable(messages, missing="java.io.FileNotFoundException" in kinds)


def _part(messages: list[str], failed_read_only: bool = False) -> tuple[str, str] | None:
    """(dataset root, part) of the first part path Spark's messages name; paths only."""
    for message in messages:
        if failed_read_only and "FAILED_READ_FILE" not in message:
            continue
        found = _PART.search(message)
        if found:
            return found.group(1), found.group(2)
    return None


def _altered(messages: list[str]) -> FileCorruptError:
    """The file Spark was reading when a module failed authentication."""
    named = _part(messages)
    if named is None:
        return FileCorruptError("a dataset file failed authentication: it was altered")
    return FileCorruptError(f"{named[0]}: file {named[1]} failed authentication: it was altered")


def _undecodable(messages: list[str], missing: bool) -> JobRuntimeError | None:
    """Any other failed read of a verified part: gone after the driver's check, or altered."""
    named = _part(messages, failed_read_only=True)
    if named is None:
        return None
    root, rel = named
    if missing:  # removed after the driver's check of the file set
        return FileMissingError(f"{root}: file {rel} is missing")
    return FileCorruptError(f"{root}: file {rel} could not be decoded: it was altered or damaged")


def by_code(code: str, message: str) -> JobRuntimeError:
    """The error class that owns ``code`` (docs/errors.md), with the refusal's message."""
    text = message.removeprefix(f"{code}: ")
    if code.startswith("keyagent."):
        return error_for(code, text)
    for cls in all_error_types():
        if cls.code == code and not issubclass(cls, KeyAgentError):
            return cls(text)
    return KeyAgentError(text, remote_code=code)
