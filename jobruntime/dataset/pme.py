"""Parquet Modular Encryption settings: AES_GCM_V1, encrypted footer, double wrapping.

pyarrow's ``CryptoFactory`` does the work; our ``KmsClient`` only hands KEKs to a
:class:`MasterKeyOps` to wrap and unwrap (the key agent in a run, the owner's own
key in an owner's tools), so no master key is ever in a reader or writer.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pyarrow.parquet.encryption as pe

from jobruntime.dataset.errors import DecryptError
from jobruntime.dataset.keyops import MasterKeyOps

ALGORITHM = "AES_GCM_V1"


class _OpsKmsClient(pe.KmsClient):  # type: ignore[misc]
    def __init__(self, ops: MasterKeyOps) -> None:
        super().__init__()
        self._ops = ops

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        return self._for(master_key_identifier).wrap(key_bytes)

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        return self._for(master_key_identifier).unwrap(wrapped_key)

    def _for(self, master_key_identifier: str) -> MasterKeyOps:
        # A file naming another master key is refused here, before the agent is asked.
        if master_key_identifier != self._ops.key_id:
            raise DecryptError("a file names a master key this reader was not given")
        return self._ops


_FACTORIES: dict[tuple[str, str, str], Any] = {}
_FACTORIES_MAX = 64
_LOCK = threading.Lock()


def _scope(ops: MasterKeyOps) -> tuple[str, str, str] | None:
    """(dataset, key id, agent socket) of a key agent's ops; None for a key held in memory."""
    dataset = getattr(ops, "dataset", None)
    socket = getattr(getattr(ops, "client", None), "socket_path", None)
    if isinstance(dataset, str) and socket is not None:
        return dataset, ops.key_id, str(socket)
    return None


def _factory(ops: MasterKeyOps) -> Any:
    """One CryptoFactory per dataset, key id and agent in this process.

    pyarrow's key tools cache KEKs (for ``cache_lifetime``) in their CryptoFactory: a
    factory per file would wrap a new KEK for every file written and unwrap every file's
    KEK on reading, so the key agent's calls would grow with the number of files. Shared,
    a Python worker wraps one KEK per dataset and unwraps each KEK once, as Parquet's
    JVM key tools do (jobruntime/native). An owner's key held in memory gets a factory
    of its own, as before.
    """
    scope = _scope(ops)
    if scope is None:
        return pe.CryptoFactory(lambda _config: _OpsKmsClient(ops))
    with _LOCK:
        found = _FACTORIES.get(scope)
        if found is None:
            if len(_FACTORIES) >= _FACTORIES_MAX:
                _FACTORIES.clear()
            found = pe.CryptoFactory(lambda _config: _OpsKmsClient(ops))
            _FACTORIES[scope] = found
        return found


_CONNECTION = pe.KmsConnectionConfig(kms_instance_id="jobruntime-key-agent")


def encryption_properties(ops: MasterKeyOps) -> Any:
    config = pe.EncryptionConfiguration(
        footer_key=ops.key_id,
        uniform_encryption=True,
        encryption_algorithm=ALGORITHM,
        plaintext_footer=False,
        double_wrapping=True,
        internal_key_material=True,
        cache_lifetime=timedelta(minutes=10),
    )
    return _factory(ops).file_encryption_properties(_CONNECTION, config)


def decryption_properties(ops: MasterKeyOps) -> Any:
    config = pe.DecryptionConfiguration(cache_lifetime=timedelta(minutes=10))
    return _factory(ops).file_decryption_properties(_CONNECTION, config)
