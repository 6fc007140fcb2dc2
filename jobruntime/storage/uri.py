"""From a dataset URI in a job spec to a ``Storage``.

Forms: ``file:///abs/path`` or a plain path (local); ``az://<container>/<prefix>`` (Azure,
with a connection string from the config or the environment); and
``https://<account>.blob.core.windows.net/<container>/<prefix>`` (Azure, with
``StorageConfig.azure_credential``). Emulator URLs on a loopback host are path-style,
``http://127.0.0.1:<port>/<account>/<container>/<prefix>``. URIs carry no credentials:
a query string (a SAS token) is refused, so secrets are only ever in ``StorageConfig``
or the environment. The Azure SDK is imported only when an Azure URI is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, unquote, urlsplit

from jobruntime.storage.base import Storage
from jobruntime.storage.errors import StorageConfigError
from jobruntime.storage.local import LocalStorage

if TYPE_CHECKING:
    from jobruntime.storage.azure import AzureBlobStorage

CONNECTION_STRING_ENV = ("JOBRUNTIME_AZURE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")
READ_TIMEOUT_ENV = "JOBRUNTIME_AZURE_READ_TIMEOUT"
READ_TIMEOUT_DEFAULT = 60.0  # azure-storage-blob's own
_READ_TIMEOUT_RANGE = (1.0, 3600.0)
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class StorageConfig:
    """Credentials for remote storage; neither field is ever shown in a repr."""

    azure_connection_string: str | None = field(default=None, repr=False)
    azure_credential: object | None = field(default=None, repr=False)


def canonical_uri(text: str, *, base: Path | None = None) -> str:
    """The one spelling of a dataset's URI, used in specs, manifests and the registry.

    A plain path (relative to ``base``, default the working directory) becomes an
    absolute ``file://`` URI with ``.`` and ``..`` resolved; ``file://`` paths are
    normalised the same way; ``az://`` keeps its container and loses trailing slashes.
    Only the command line takes relative paths: see :func:`require_canonical`.
    """
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if not scheme:
        path = Path(os.path.normpath((base or Path.cwd()) / Path(text).expanduser()))
        return "file://" + quote(str(path))
    if scheme == "file":
        _local(parts, f"file://{parts.path}")  # absolute, no host
        return "file://" + quote(os.path.normpath(unquote(parts.path)))
    if scheme == "az":
        prefix = unquote(parts.path).strip("/")
        return f"az://{parts.netloc}/{quote(prefix)}" if prefix else f"az://{parts.netloc}"
    return text.rstrip("/")


def require_canonical(uri: str) -> str:
    """Refuse a dataset URI that is not in its one canonical spelling (specs, the API)."""
    if not urlsplit(uri).scheme or canonical_uri(uri) != uri:
        raise StorageConfigError(
            f"dataset URI {uri!r} is not canonical: name it as {canonical_uri(uri)!r}"
        )
    return uri


def open_storage(uri: str, *, config: StorageConfig | None = None) -> Storage:
    """The storage rooted at ``uri``; ``StorageConfigError`` if it cannot be opened."""
    config = config or StorageConfig()
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme:
        return LocalStorage(Path(uri))
    shown = f"{scheme}://{parts.hostname or ''}{parts.path}"  # never the query or userinfo
    if parts.query or parts.fragment or parts.username or parts.password:
        raise StorageConfigError(
            f"storage URI {shown!r} must not carry a query, fragment or user info; "
            "give credentials in StorageConfig or the environment"
        )
    if scheme == "file":
        return _local(parts, shown)
    if scheme == "az":
        return _azure_named(parts, shown, config)
    if scheme in ("https", "http"):
        return _azure_url(parts, shown, config)
    raise StorageConfigError(f"unsupported storage URI scheme {scheme!r}")


def _local(parts: SplitResult, shown: str) -> LocalStorage:
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise StorageConfigError(f"{shown!r} is not a file URI of an absolute local path")
    return LocalStorage(Path(unquote(parts.path)))


def _connection_string(config: StorageConfig) -> str:
    if config.azure_connection_string:
        return config.azure_connection_string
    for name in CONNECTION_STRING_ENV:
        value = os.environ.get(name)
        if value:
            return value
    raise StorageConfigError(
        "no Azure connection string: set StorageConfig.azure_connection_string or "
        + " or ".join(CONNECTION_STRING_ENV)
    )


def read_timeout() -> float:
    """Seconds an Azure call waits for bytes before its retry: ``$JOBRUNTIME_AZURE_READ_TIMEOUT``
    (1 to 3600), else the SDK's 60 s. A stalled connection costs this much per retry."""
    text = os.environ.get(READ_TIMEOUT_ENV, "").strip()
    if not text:
        return READ_TIMEOUT_DEFAULT
    low, high = _READ_TIMEOUT_RANGE
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not low <= value <= high:
        raise StorageConfigError(
            f"${READ_TIMEOUT_ENV} must be a number of seconds from {low:g} to {high:g}"
        )
    return value


def _azure_named(parts: SplitResult, shown: str, config: StorageConfig) -> AzureBlobStorage:
    from jobruntime.storage.azure import AzureBlobStorage

    if not parts.netloc:
        raise StorageConfigError(f"{shown!r} names no container: use az://<container>/<prefix>")
    return AzureBlobStorage(
        parts.netloc,
        unquote(parts.path),
        connection_string=_connection_string(config),
        read_timeout=read_timeout(),
    )


def _azure_url(parts: SplitResult, shown: str, config: StorageConfig) -> AzureBlobStorage:
    from jobruntime.storage.azure import AzureBlobStorage

    host = (parts.hostname or "").lower()
    segments = unquote(parts.path).strip("/").split("/", 2 if host in _LOOPBACK else 1)
    if host in _LOOPBACK and len(segments) >= 2:  # emulator, path-style: /<account>/...
        account_url = f"{parts.scheme}://{parts.netloc}/{segments.pop(0)}"
    elif ".blob." in host and parts.scheme == "https":
        account_url = f"https://{parts.netloc}"
    else:
        raise StorageConfigError(
            f"{shown!r} is not an Azure Blob URL: use https://<account>.blob.core.windows.net/"
            "<container>/<prefix> (http only for an emulator on a loopback address)"
        )
    if not segments[0]:
        raise StorageConfigError(f"{shown!r} names no container")
    if config.azure_credential is None:
        raise StorageConfigError(f"no credential for {shown!r}: set StorageConfig.azure_credential")
    return AzureBlobStorage(
        segments[0],
        segments[1] if len(segments) > 1 else "",
        account_url=account_url,
        credential=config.azure_credential,
        read_timeout=read_timeout(),
    )
