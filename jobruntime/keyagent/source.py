"""Where the agent's keys come from: the seam between serving keys and releasing them.

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
from pathlib import Path
from typing import Protocol

from jobruntime.errors import ConfigError
from jobruntime.keyagent.errors import NoSuchKeyError, VersionConflictError


class KeySource(Protocol):
    """Releases dataset keys the verified spec allows.

    The agent calls :meth:`release` at most once per dataset per process (it
    caches the result, failures included) and only for names in :attr:`allowed`,
    so a source may spend a KMS round trip or a one-time nonce on each call and
    should do its own retrying of transient failures before it gives up.
    """

    @property
    def allowed(self) -> frozenset[str]:
        """Dataset names the verified spec names, inputs and outputs."""
        ...

    def release(self, dataset: str) -> bytes:
        """The dataset's key; raise a ``JobRuntimeError`` subclass to refuse."""
        ...


class VersionSource(Protocol):
    """Optional for a source: the control plane's record of each dataset's latest version."""

    def latest_version(self, dataset: str) -> tuple[int, str] | None: ...

    def record_version(self, dataset: str, version: int, digest: str) -> None: ...


class StaticKeySource:
    """Keys handed over in memory. NOT FOR PRODUCTION: nothing is attested or released.

    For tests and local development only; it lets the agent, the Spark data
    source and the JVM client be exercised without a KMS.
    """

    def __init__(self, keys: Mapping[str, bytes], allowed: Iterable[str] | None = None) -> None:
        self._keys = dict(keys)
        self._allowed = frozenset(self._keys if allowed is None else allowed)
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
    def allowed(self) -> frozenset[str]:
        return self._allowed

    def release(self, dataset: str) -> bytes:
        try:
            return self._keys[dataset]
        except KeyError:
            raise NoSuchKeyError(f"no static key for dataset {dataset!r}") from None

    @classmethod
    def from_json_file(cls, path: Path, allowed: Iterable[str] | None = None) -> StaticKeySource:
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
        return cls(keys, allowed)


def _key_bytes(value: object) -> bytes:
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return b""
