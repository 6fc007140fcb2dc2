"""Parquet Modular Encryption settings: AES_GCM_V1, encrypted footer, double wrapping.

pyarrow's ``CryptoFactory`` does the work; our ``KmsClient`` only hands KEKs to a
:class:`MasterKeyOps` to wrap and unwrap (the key agent in a run, the owner's own
key in an owner's tools), so no master key is ever in a reader or writer.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow.parquet.encryption as pe

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
            raise ValueError("file names a master key this reader was not given")
        return self._ops


def _factory(ops: MasterKeyOps) -> Any:
    return pe.CryptoFactory(lambda _config: _OpsKmsClient(ops))


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
