"""Dataset keys in memory: one release per dataset per process, however many readers ask.

Executors start many Python workers and tasks at once; all of them asking for the
same dataset must cost one attestation-backed release, not one each. A lock per
dataset serialises the first release without holding up other datasets. Keys are
kept in bytearrays so :meth:`KeyCache.close` can overwrite them; the copies handed
out as ``bytes`` cannot be, so zeroing is best effort.
"""

from __future__ import annotations

import logging
import threading

from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.errors import KeyAgentUnavailableError, KeySourceError, NotInSpecError
from jobruntime.keyagent.source import KeySource

log = logging.getLogger("jobruntime.keyagent")


class KeyCache:
    def __init__(self, source: KeySource) -> None:
        self._source = source
        self.allowed = frozenset(source.allowed)  # read once: the spec does not change
        self._keys: dict[str, bytearray] = {}
        self._failures: dict[str, JobRuntimeError] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._closed = False

    def cached(self) -> list[str]:
        with self._guard:
            return sorted(self._keys)

    def get(self, dataset: str) -> bytes:
        """The dataset's key, released on first use; a failed release fails every later ask."""
        if dataset not in self.allowed:
            raise NotInSpecError(f"the verified spec does not name dataset {dataset!r}")
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

    def close(self) -> None:
        """Overwrite every cached key and refuse further requests."""
        with self._guard:
            self._closed = True
            for key in self._keys.values():
                _zero(key)
            self._keys.clear()

    def _lookup(self, dataset: str) -> bytes | None:
        with self._guard:
            if self._closed:
                raise KeyAgentUnavailableError("the key agent is shutting down")
            key = self._keys.get(dataset)
            return None if key is None else bytes(key)

    def _release(self, dataset: str) -> bytearray:
        try:
            raw = self._source.release(dataset)
        except JobRuntimeError:
            raise
        except Exception as exc:  # a bug in the source: its message might hold anything
            raise KeySourceError(
                f"the key source failed for dataset {dataset!r}: unexpected {type(exc).__name__}"
            ) from None
        if not isinstance(raw, bytes | bytearray) or not raw:
            raise KeySourceError(f"the key source returned no key bytes for dataset {dataset!r}")
        return bytearray(raw)


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))  # same length: overwritten in place, not reallocated
