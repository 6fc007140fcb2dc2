"""Typed storage failures (codes ``storage.*``, exit code 23).

Messages name the relative path, the operation and a one-line reason. They never carry
object contents, connection strings, account keys or SAS tokens: the SDK's own exception
text can include signed URLs, so backends translate it instead of passing it through.
"""

from __future__ import annotations

from jobruntime.errors import JobRuntimeError


class StorageError(JobRuntimeError):
    """A storage operation failed (I/O, network, or the service refused it)."""

    code = "storage.io"
    exit_code = 23


class StorageNotFoundError(StorageError):
    """The object (or its container) does not exist."""

    code = "storage.not_found"


class StorageExistsError(StorageError):
    """A rename target already exists (renames never overwrite)."""

    code = "storage.exists"


class StoragePathError(StorageError):
    """A path is not a clean relative path under the storage root."""

    code = "storage.path"


class StorageRangeError(StorageError):
    """A ranged read asked for a negative offset or length."""

    code = "storage.range"


class StorageConfigError(StorageError):
    """A storage URI or its credentials are missing or unusable."""

    code = "storage.config"
