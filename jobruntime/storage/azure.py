"""Storage in an Azure Blob container, under an optional name prefix.

Everything goes through ``azure-storage-blob``: large objects are uploaded as blocks and
committed in one request (readers never see a partial object), ranged reads are ranged
GETs, and conditional requests give the atomic create-if-absent. Credentials are handed
to the SDK and not kept here; SDK exception text (which can quote signed URLs) is turned
into a one-line status and error code before it reaches a caller.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ExponentialRetry

from jobruntime.storage.base import (
    ObjectInfo,
    check_delete_prefix,
    check_path,
    check_prefix,
    check_range,
)
from jobruntime.storage.errors import (
    StorageConfigError,
    StorageError,
    StorageExistsError,
    StorageNotFoundError,
    StoragePathError,
)

MiB = 1024 * 1024
# Newest version Azurite 3.35 accepts; the SDK's default is newer than that.
DEFAULT_API_VERSION = "2025-11-05"
# Azurite's well-known development account (published in Azurite's documentation).
DEVSTORE_ACCOUNT_NAME = "devstoreaccount1"
DEVSTORE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEVSTORE_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"

_CONTAINER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
T = TypeVar("T")
_SAS_SIGNATURE = re.compile(r"(?i)(\bsig=)[^&\s\"']+")


class _RedactSasSignatures(logging.Filter):
    """urllib3 logs request lines with their query at DEBUG: hide a SAS's ``sig=``."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "sig=" in text.lower():
            record.msg, record.args = _SAS_SIGNATURE.sub(r"\1REDACTED", text), ()
        return True


# azure-core's own HTTP logging already redacts; urllib3 (under requests) does not.
logging.getLogger("urllib3.connectionpool").addFilter(_RedactSasSignatures())


def development_connection_string(blob_endpoint: str = DEVSTORE_BLOB_ENDPOINT) -> str:
    """An explicit connection string for Azurite's well-known account at ``blob_endpoint``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEVSTORE_ACCOUNT_NAME};"
        f"AccountKey={DEVSTORE_ACCOUNT_KEY};BlobEndpoint={blob_endpoint};"
    )


def expand_development_storage(connection_string: str) -> str:
    """Resolve ``UseDevelopmentStorage=true``, honouring a ``BlobEndpoint`` next to it.

    The SDK maps the shorthand to 127.0.0.1:10000 only; an Azurite on another port is
    reached with ``UseDevelopmentStorage=true;BlobEndpoint=http://127.0.0.1:PORT/...``.
    Any other connection string is returned unchanged.
    """
    settings: dict[str, str] = {}
    for part in connection_string.strip().rstrip(";").split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            raise StorageConfigError("the Azure connection string is malformed")
        settings[key.strip().lower()] = value.strip()
    if settings.get("usedevelopmentstorage", "").lower() != "true":
        return connection_string
    return development_connection_string(settings.get("blobendpoint", DEVSTORE_BLOB_ENDPOINT))


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


@contextlib.contextmanager
def _translated(op: str, path: str) -> Iterator[None]:
    """SDK exceptions to storage errors with a status and code, never the SDK's text."""
    try:
        yield
    except ResourceNotFoundError:
        raise StorageNotFoundError(f"{path!r} does not exist") from None
    except HttpResponseError as exc:
        detail = f"HTTP {exc.status_code} {_error_code(exc)}".strip()
        raise StorageError(f"cannot {op} {path!r}: {detail}") from None
    except AzureError as exc:
        reason = f"{type(exc).__name__} (storage service unreachable or not answering)"
        raise StorageError(f"cannot {op} {path!r}: {reason}") from None


class AzureBlobStorage:
    """Objects are blobs named ``<prefix>/<path>`` in ``container``.

    Give either ``connection_string`` (``UseDevelopmentStorage=true`` works, see
    ``expand_development_storage``) or ``account_url`` plus ``credential`` (anything the
    SDK accepts: an account key dict, a SAS string, a token credential). The container
    is created the first time a write finds it missing.
    """

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: object | None = None,
        api_version: str = DEFAULT_API_VERSION,
        max_block_size: int = 4 * MiB,
        max_single_put_size: int = 4 * MiB,
        max_concurrency: int = 2,
        retry_total: int = 5,
        retry_backoff: int = 1,
        copy_timeout: float = 60.0,
        read_timeout: float = 60.0,
    ) -> None:
        if not _CONTAINER_NAME.fullmatch(container):
            raise StorageConfigError(f"{container!r} is not a valid Azure container name")
        try:
            self._prefix = check_path(prefix.strip("/")) if prefix.strip("/") else ""
        except StoragePathError as exc:
            raise StorageConfigError(f"bad blob prefix: {exc.message}") from None
        self._max_concurrency = max_concurrency
        self._copy_timeout = copy_timeout
        options: dict[str, Any] = {
            "api_version": api_version,
            "max_block_size": max_block_size,
            "max_single_put_size": max_single_put_size,
            # How long a call waits for bytes before it is retried (the SDK's default, 60 s).
            "read_timeout": read_timeout,
            # The storage SDK's own retry policy; azure-core's retry_backoff_factor is
            # ignored by it, and its default first back-off is 15 s.
            "retry_policy": ExponentialRetry(
                initial_backoff=retry_backoff,
                increment_base=2,
                retry_total=retry_total,
                random_jitter_range=1,
            ),
        }
        self._service = self._client(connection_string, account_url, credential, options)
        self._container = self._service.get_container_client(container)
        where = (
            f"az://{container}"
            if account_url is None
            else f"{_strip_query(account_url)}/{container}"
        )
        self._uri = f"{where}/{self._prefix}" if self._prefix else where

    @staticmethod
    def _client(
        connection_string: str | None,
        account_url: str | None,
        credential: object | None,
        options: dict[str, Any],
    ) -> BlobServiceClient:
        if (connection_string is None) == (account_url is None):
            raise StorageConfigError("give exactly one of connection_string and account_url")
        cred: Any = credential
        try:
            if connection_string is not None:
                conn = expand_development_storage(connection_string)
                return BlobServiceClient.from_connection_string(conn, credential=cred, **options)
            return BlobServiceClient(str(account_url), credential=cred, **options)
        except (ValueError, TypeError) as exc:  # the SDK's text may quote the settings
            kind = "connection string" if connection_string is not None else "account URL"
            raise StorageConfigError(
                f"the Azure {kind} or credential is unusable ({type(exc).__name__})"
            ) from None

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def container(self) -> str:
        return str(self._container.container_name)

    @property
    def prefix(self) -> str:
        """The blob-name prefix objects live under ("" for the container's top)."""
        return self._prefix

    def __repr__(self) -> str:
        return f"AzureBlobStorage(uri={self._uri!r})"

    def _name(self, path: str) -> str:
        path = check_path(path)
        return f"{self._prefix}/{path}" if self._prefix else path

    def _blob(self, path: str) -> BlobClient:
        return self._container.get_blob_client(self._name(path))

    # --- reads -------------------------------------------------------------------

    def read(self, path: str) -> bytes:
        blob = self._blob(path)
        with _translated("read", path):
            return blob.download_blob(max_concurrency=self._max_concurrency).readall()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        blob = self._blob(path)
        check_range(offset, length)
        if length == 0:
            self.size(path)  # still "not found" for a missing object
            return b""
        with _translated("read", path):
            try:
                stream = blob.download_blob(
                    offset=offset, length=length, max_concurrency=self._max_concurrency
                )
                return stream.readall()
            except HttpResponseError as exc:
                if exc.status_code == 416:  # at or past the end: a short read, as for a file
                    return b""
                raise

    def size(self, path: str) -> int:
        blob = self._blob(path)
        with _translated("stat", path):
            return int(blob.get_blob_properties().size)

    def exists(self, path: str) -> bool:
        blob = self._blob(path)
        with _translated("stat", path):
            return bool(blob.exists())

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = check_prefix(prefix)
        base = f"{self._prefix}/" if self._prefix else ""
        found: list[ObjectInfo] = []
        with _translated("list", prefix):
            try:
                for item in self._container.list_blobs(name_starts_with=base + prefix):
                    found.append(ObjectInfo(item.name[len(base) :], int(item.size)))
            except ResourceNotFoundError:  # no container yet: nothing in it
                return []
        return sorted(found)

    # --- writes ------------------------------------------------------------------

    def _with_container(self, action: Callable[[], T]) -> T:
        """Run ``action``; if the container is missing, create it and run it once more."""
        try:
            return action()
        except ResourceNotFoundError as exc:
            if _error_code(exc) != "ContainerNotFound":
                raise
        with contextlib.suppress(ResourceExistsError):  # someone else just created it
            self._container.create_container()
        return action()

    def _upload(self, path: str, data: bytes, *, overwrite: bool) -> None:
        blob = self._blob(path)
        self._with_container(
            lambda: blob.upload_blob(
                data, length=len(data), overwrite=overwrite, max_concurrency=self._max_concurrency
            )
        )

    def write(self, path: str, data: bytes) -> None:
        with _translated("write", path):
            self._upload(path, data, overwrite=True)

    def create(self, path: str, data: bytes) -> bool:
        with _translated("create", path):
            try:  # overwrite=False sends If-None-Match: * with the (final) write
                self._upload(path, data, overwrite=False)
            except (ResourceExistsError, ResourceModifiedError):
                return False
        return True

    def rename(self, src: str, dst: str) -> None:
        """Server-side copy to ``dst`` (only if absent), then delete ``src``.

        Not atomic: between the copy and the delete both names exist. ``src`` is deleted
        only if it is still the version that was copied; otherwise both are kept and
        ``StorageError`` says so.
        """
        source, target = self._blob(src), self._blob(dst)
        with _translated("rename", src):
            etag = source.get_blob_properties().etag
            try:
                copy = target.start_copy_from_url(
                    source.url, match_condition=MatchConditions.IfMissing
                )
            except (ResourceExistsError, ResourceModifiedError):
                raise StorageExistsError(f"cannot rename {src!r}: {dst!r} already exists") from None
            self._wait_for_copy(target, str(copy["copy_status"]), str(copy["copy_id"]), src)
            try:
                source.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                raise StorageError(
                    f"cannot rename {src!r}: it changed during the copy; both names kept"
                ) from None

    def _wait_for_copy(self, target: BlobClient, status: str, copy_id: str, src: str) -> None:
        """Poll a pending copy to its end; on failure or timeout remove the partial target."""
        deadline = time.monotonic() + self._copy_timeout
        while status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = str(target.get_blob_properties().copy.status)
        if status == "success":
            return
        if status == "pending":
            with contextlib.suppress(HttpResponseError):
                target.abort_copy(copy_id)
        with contextlib.suppress(ResourceNotFoundError):
            target.delete_blob()
        raise StorageError(f"cannot rename {src!r}: server-side copy ended {status!r}")

    def _delete(self, path: str) -> bool:
        """Delete one blob (and its snapshots); False if it was not there."""
        blob = self._blob(path)
        with _translated("delete", path):
            try:
                blob.delete_blob(delete_snapshots="include")
            except ResourceNotFoundError:
                return False
        return True

    def delete(self, path: str) -> None:
        self._delete(path)

    def delete_prefix(self, prefix: str) -> int:
        return sum(self._delete(info.path) for info in self.list(check_delete_prefix(prefix)))


def _strip_query(url: str) -> str:
    """The URL without a query or fragment, so a SAS token never reaches ``uri``."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # and no user:password either
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")
