"""The wrapped-key format shared by the Python and JVM KMS clients.

``base64(nonce[12] || AES-256-GCM(key, aad=master key id))``: the PME key-encryption
keys (KEKs) are wrapped with the dataset master key. The JVM ``KmsClient`` of the
fast path must produce and accept exactly this.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobruntime.dataset.errors import DecryptError


def wrap(master_key: bytes, master_key_id: str, secret: bytes) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(master_key).encrypt(nonce, secret, master_key_id.encode())
    return base64.b64encode(nonce + sealed).decode()


def unwrap(master_key: bytes, master_key_id: str, wrapped: str) -> bytes:
    try:
        raw = base64.b64decode(wrapped, validate=True)
        return AESGCM(master_key).decrypt(raw[:12], raw[12:], master_key_id.encode())
    except (InvalidTag, ValueError, binascii.Error):
        raise DecryptError(f"a key wrapped under {master_key_id} did not unwrap") from None
