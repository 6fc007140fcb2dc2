"""Parquet Modular Encryption settings: AES_GCM_V1, encrypted footer, double wrapping.

pyarrow's ``CryptoFactory`` does the work; our ``KmsClient`` only wraps and
unwraps KEKs with a master key the caller already holds in memory (from the key
agent or, for an owner's own tools, the owner API). It never calls a KMS.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow.parquet.encryption as pe

from jobruntime.dataset import wrapping

ALGORITHM = "AES_GCM_V1"


class _MasterKeyClient(pe.KmsClient):  # type: ignore[misc]
    def __init__(self, master_key_id: str, master_key: bytes) -> None:
        super().__init__()
        self._id, self._key = master_key_id, master_key

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        return wrapping.wrap(self._key_for(master_key_identifier), master_key_identifier, key_bytes)

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        return wrapping.unwrap(
            self._key_for(master_key_identifier), master_key_identifier, wrapped_key
        )

    def _key_for(self, master_key_identifier: str) -> bytes:
        if master_key_identifier != self._id:
            raise ValueError("file names a master key this reader was not given")
        return self._key


def _factory(master_key_id: str, master_key: bytes) -> Any:
    return pe.CryptoFactory(lambda _config: _MasterKeyClient(master_key_id, master_key))


_CONNECTION = pe.KmsConnectionConfig(kms_instance_id="jobruntime-key-agent")


def encryption_properties(master_key_id: str, master_key: bytes) -> Any:
    config = pe.EncryptionConfiguration(
        footer_key=master_key_id,
        uniform_encryption=True,
        encryption_algorithm=ALGORITHM,
        plaintext_footer=False,
        double_wrapping=True,
        internal_key_material=True,
        cache_lifetime=timedelta(minutes=10),
    )
    return _factory(master_key_id, master_key).file_encryption_properties(_CONNECTION, config)


def decryption_properties(master_key_id: str, master_key: bytes) -> Any:
    config = pe.DecryptionConfiguration(cache_lifetime=timedelta(minutes=10))
    return _factory(master_key_id, master_key).file_decryption_properties(_CONNECTION, config)
