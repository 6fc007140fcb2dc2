"""A refusal raised in the JVM (``jobruntime.kms.Refusal``), back as the runtime's typed error.

The jar's refusals carry the runtime's stable codes (``dataset.file_corrupt``,
``keyagent.not_in_spec``, ...) and messages that name datasets, files and key ids only.
Spark wraps them (a task failure inside a job failure); :func:`typed` walks the Java
cause chain, reading class names, codes and those messages only, so the driver reports
a native refusal with the same code and exit code as the Python data source's.
"""

from __future__ import annotations

from typing import Any

from jobruntime.errors import JobRuntimeError, all_error_types
from jobruntime.keyagent.errors import KeyAgentError, error_for

_REFUSAL_CLASSES = ("jobruntime.kms.Refusal", "jobruntime.kms.Refusal$Denied")
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
    try:
        while current is not None and seen < _DEPTH:
            if current.getClass().getName() in _REFUSAL_CLASSES:
                return by_code(str(current.code()), str(current.getMessage()))
            current = current.getCause()
            seen += 1
    except Exception:  # the JVM is gone, or an object is not what it seemed
        return None
    return None


def by_code(code: str, message: str) -> JobRuntimeError:
    """The error class that owns ``code`` (docs/errors.md), with the refusal's message."""
    text = message.removeprefix(f"{code}: ")
    if code.startswith("keyagent."):
        return error_for(code, text)
    for cls in all_error_types():
        if cls.code == code and not issubclass(cls, KeyAgentError):
            return cls(text)
    return KeyAgentError(text, remote_code=code)
