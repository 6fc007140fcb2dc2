"""Dataset master keys in memory: one release per dataset per process, used only in here.

Executors start many Python workers and tasks at once; all of them asking about the
same dataset must cost one attestation-backed release, not one each. A lock per
dataset serialises the first release without holding up other datasets. Keys are
kept in bytearrays so :meth:`KeyCache.close` can overwrite them; the short-lived
copies inside the operations of one request cannot be, so zeroing is best effort.

The cache is also where the grants are enforced: it hands out a
:class:`~jobruntime.dataset.keyops.MasterKeyOps` for a dataset only as the spec
allows (granted, writable for a write, the spec's key id), and never a key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.errors import (
    KeyAgentUnavailableError,
    KeyMismatchError,
    KeySourceError,
    NotInSpecError,
    NotWritableError,
)
from jobruntime.keyagent.source import Grant, KeySource, read_grants

if TYPE_CHECKING:
    from jobruntime.dataset.keyops import MasterKeyOps

log = logging.getLogger("jobruntime.keyagent")


class KeyCache:
    def __init__(self, source: KeySource) -> None:
        self._source = source
        self.grants: Mapping[str, Grant] = MappingProxyType(read_grants(source))
        self._keys: dict[str, bytearray] = {}
        self._failures: dict[str, JobRuntimeError] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._closed = False

    def cached(self) -> list[str]:
        with self._guard:
            return sorted(self._keys)

    def authorize(self, dataset: str, *, write: bool, key_id: str | None = None) -> Grant:
        """The dataset's grant if it allows this request; refusals never call the source."""
        grant = self.grants.get(dataset)
        if grant is None:
            raise NotInSpecError(f"the verified spec does not name dataset {dataset!r}")
        if write and not grant.writable:
            raise NotWritableError(f"dataset {dataset!r} is an input of the spec: read only")
        if key_id is not None and grant.key_id is not None and key_id != grant.key_id:
            raise KeyMismatchError(f"dataset {dataset!r} is under key {grant.key_id}, not {key_id}")
        return grant

    def ops(self, dataset: str, key_id: str, *, write: bool) -> MasterKeyOps:
        """Operations under the dataset's master key, released on first use, as granted."""
        # Imported here, as below: readers import this package for its stdlib-only client.
        from jobruntime.dataset.keyops import LocalMasterKey

        self.authorize(dataset, write=write, key_id=key_id)
        return LocalMasterKey(key_id, self._key(dataset))

    def close(self) -> None:
        """Overwrite every cached key and refuse further requests."""
        with self._guard:
            self._closed = True
            for key in self._keys.values():
                _zero(key)
            self._keys.clear()

    def _key(self, dataset: str) -> bytes:
        """The dataset's key, released on first use; a failed release fails every later ask."""
        with self._guard:
            lock = self._locks.setdefault(dataset, threading.Lock())
        with lock:
            found = self._lookup(dataset)
            if found is not None:
                return found
            failure = self._failures.get(dataset)
            if failure is not None:
                raise failure.with_traceback(None)
            try:
                key = self._release(dataset)
            except JobRuntimeError as exc:
                self._failures[dataset] = exc
                log.warning("release of dataset %s refused: %s", dataset, exc.one_line())
                raise
            with self._guard:
                if self._closed:
                    _zero(key)
                    raise KeyAgentUnavailableError("the key agent is shutting down")
                self._keys[dataset] = key
                log.info("released the key of dataset %s", dataset)
                return bytes(key)

    def _lookup(self, dataset: str) -> bytes | None:
        with self._guard:
            if self._closed:
                raise KeyAgentUnavailableError("the key agent is shutting down")
            key = self._keys.get(dataset)
            return None if key is None else bytes(key)

    def _release(self, dataset: str) -> bytearray:
        from jobruntime.dataset.keyops import MASTER_KEY_BYTES

        try:
            raw = self._source.release(dataset)
        except JobRuntimeError:
            raise
        except Exception as exc:  # a bug in the source: its message might hold anything
            raise KeySourceError(
                f"the key source failed for dataset {dataset!r}: unexpected {type(exc).__name__}"
            ) from None
        if not isinstance(raw, bytes | bytearray) or len(raw) != MASTER_KEY_BYTES:
            raise KeySourceError(
                f"the key source returned no {MASTER_KEY_BYTES}-byte key for dataset {dataset!r}"
            )
        return bytearray(raw)


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))  # same length: overwritten in place, not reallocated
