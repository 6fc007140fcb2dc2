"""The storage layer under encrypted datasets: local filesystem and Azure Blob.

``open_storage(uri)`` picks the backend. The Azure backend lives in
``jobruntime.storage.azure`` and is not imported here, so local-only users (and the
verifier's start-up time) do not pay for the Azure SDK.
"""

from jobruntime.storage.base import ObjectInfo, Storage
from jobruntime.storage.errors import (
    StorageConfigError,
    StorageError,
    StorageExistsError,
    StorageNotFoundError,
    StoragePathError,
    StorageRangeError,
)
from jobruntime.storage.local import LocalStorage
from jobruntime.storage.uri import StorageConfig, open_storage

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "Storage",
    "StorageConfig",
    "StorageConfigError",
    "StorageError",
    "StorageExistsError",
    "StorageNotFoundError",
    "StoragePathError",
    "StorageRangeError",
    "open_storage",
]
