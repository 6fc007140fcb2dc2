"""Where the agent's keys come from, and what the spec lets the pod do with each.

The master key goes from the source into the agent's memory and never out: the
agent serves operations with it (:mod:`jobruntime.keyagent.protocol`), never it.

The production source attests the pod once and asks the KMS to release each
dataset key wrapped to an ephemeral key (DESIGN.md, "Key release"); it is built
separately and plugged in through :func:`jobruntime.keyagent.cli.make_source`.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from jobruntime.dataset.errors import VersionConflictError
from jobruntime.errors import ConfigError
from jobruntime.keyagent.errors import KeySourceError, NoSuchKeyError


@dataclass(frozen=True)
class Grant:
    """What the verified spec lets the pod do with one dataset's master key.

    ``key_id`` is the spec's master key id for the dataset: when known, every keyed
    request must name exactly it (it is the AES-GCM AAD of wrapped KEKs and is bound
    into the manifest MAC key). ``writable`` marks an output: only outputs may wrap,
    compute manifest MACs and record versions.
    """

    key_id: str | None
    writable: bool


class KeySource(Protocol):
    """Releases dataset keys the verified spec allows, into the agent and nowhere else.

    The agent calls :meth:`release` at most once per dataset per process (it
    caches the result, failures included) and only for datasets it grants, so a
    source may spend a KMS round trip or a one-time nonce on each call and should
    do its own retrying of transient failures before it gives up.
    """

    @property
    def grants(self) -> Mapping[str, Grant]:
        """Dataset name -> what the verified spec lets the pod do with its key."""
        ...

    def release(self, dataset: str) -> bytes:
        """The dataset's master key; raise a ``JobRuntimeError`` subclass to refuse."""
        ...


def read_grants(source: KeySource) -> dict[str, Grant]:
    """The source's grants, read once: the verified spec does not change."""
    return {name: _grant(name, grant) for name, grant in source.grants.items()}


def _grant(name: object, grant: object) -> Grant:
    if not isinstance(name, str) or not isinstance(grant, Grant):
        raise KeySourceError("the key source's grants are not dataset names to Grant")
    return grant


class VersionSource(Protocol):
    """Optional for a source: the control plane's record of each dataset's latest version."""

    def latest_version(self, dataset: str) -> tuple[int, str] | None: ...

    def record_version(self, dataset: str, version: int, digest: str) -> None: ...


class StaticKeySource:
    """Keys handed over in memory. NOT FOR PRODUCTION: nothing is attested or released.

    For tests and local development only; it lets the agent, the Spark data
    source and the JVM client be exercised without a KMS. By default every dataset
    it has a key for is granted, writable, with no key id; ``allowed`` narrows the
    datasets, ``writable`` the outputs, ``key_ids`` pins key ids as a spec would.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        allowed: Iterable[str] | None = None,
        writable: Iterable[str] | None = None,
        key_ids: Mapping[str, str] | None = None,
    ) -> None:
        self._keys = dict(keys)
        names = frozenset(self._keys if allowed is None else allowed)
        outputs = names if writable is None else frozenset(writable)
        ids = dict(key_ids or {})
        self._grants = MappingProxyType(
            {n: Grant(key_id=ids.get(n), writable=n in outputs) for n in sorted(names)}
        )
        self._versions: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def latest_version(self, dataset: str) -> tuple[int, str] | None:
        """In memory, for this agent's life only: a stand-in for the control plane."""
        return self._versions.get(dataset)

    def record_version(self, dataset: str, version: int, digest: str) -> None:
        with self._lock:
            current = self._versions.get(dataset, (0, ""))[0]
            if version != current + 1:
                raise VersionConflictError(
                    f"{dataset}: version {version} does not follow recorded {current}"
                )
            self._versions[dataset] = (version, digest)

    @property
    def grants(self) -> Mapping[str, Grant]:
        return self._grants

    def release(self, dataset: str) -> bytes:
        try:
            return self._keys[dataset]
        except KeyError:
            raise NoSuchKeyError(f"no static key for dataset {dataset!r}") from None

    @classmethod
    def from_json_file(
        cls,
        path: Path,
        allowed: Iterable[str] | None = None,
        writable: Iterable[str] | None = None,
        key_ids: Mapping[str, str] | None = None,
    ) -> StaticKeySource:
        """Read ``{"dataset": "<base64 key>"}``: a development convenience, keys on disk."""
        try:
            obj = json.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read static keys {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"static keys {path} is not JSON") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"static keys {path} must be an object of dataset: base64 key")
        keys = {name: _key_bytes(value) for name, value in obj.items()}
        bad = sorted(name for name, key in keys.items() if not key)
        if bad:  # say which entries, never what is in them
            raise ConfigError(f"static keys {path}: not non-empty base64 for {', '.join(bad)}")
        return cls(keys, allowed, writable, key_ids)


def _key_bytes(value: object) -> bytes:
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        return b""
