"""What readers and writers may do with a dataset master key, without holding it.

In a run the master key stays in the key agent (the pod's local KMS): readers and
writers get a :class:`MasterKeyOps` backed by its socket
(:class:`jobruntime.keyagent.client.AgentKeyOps`) that wraps and unwraps Parquet
KEKs and computes and checks manifest MACs. :class:`LocalMasterKey` does the same
crypto in memory: the agent uses it, and so do a data owner's own tools, which
hold their own key from the KMS owner API.

Manifest authentication (unchanged key derivation, MAC over a fixed-size digest so
that a MAC request to the agent is 32 bytes, not a whole manifest)::

    okm       = HKDF-SHA256(master key, salt=None, info="jobruntime/manifest/v1|" + key id, 64)
    key_check = hex(HMAC-SHA256(okm[32:], "key-check"))
    mac       = hex(HMAC-SHA256(okm[:32], "jobruntime/manifest/v1|" + SHA-256(manifest body)))
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jobruntime.dataset import wrapping
from jobruntime.dataset.errors import WrongKeyError

MASTER_KEY_BYTES = 32  # AES-256-GCM
DIGEST_BYTES = 32  # SHA-256 of a manifest body
_DOMAIN = b"jobruntime/manifest/v1|"


class MasterKeyOps(Protocol):
    """One dataset master key, by id; every operation a reader or writer needs, no key."""

    @property
    def key_id(self) -> str:
        """The master key's id: the AES-GCM AAD of wrapped KEKs and the manifests' key id."""
        ...

    def wrap(self, secret: bytes) -> str:
        """A KEK wrapped in the format of :mod:`jobruntime.dataset.wrapping`."""
        ...

    def unwrap(self, wrapped: str) -> bytes:
        """The KEK; raises a typed error if it was not wrapped under this key and id."""
        ...

    def key_check(self) -> str:
        """64 hex digits that tell this key from another without revealing it."""
        ...

    def mac(self, digest: bytes) -> str:
        """64 hex digits authenticating a manifest body's 32-byte SHA-256 digest."""
        ...

    def check_mac(self, digest: bytes, mac: str) -> bool:
        """Whether ``mac`` is :meth:`mac` of ``digest`` (compared in constant time)."""
        ...


def body_digest(body: bytes) -> bytes:
    """What a manifest MAC covers: the SHA-256 of the manifest's canonical body."""
    return hashlib.sha256(body).digest()


class LocalMasterKey:
    """The master key in this process's memory: the key agent's and an owner's tools' ops."""

    def __init__(self, key_id: str, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise WrongKeyError(f"master key {key_id} is not {MASTER_KEY_BYTES} bytes")
        self._key_id = key_id
        self._key = bytes(key)
        okm = HKDF(
            algorithm=hashes.SHA256(),
            length=64,
            salt=None,
            info=_DOMAIN + key_id.encode(),
        ).derive(self._key)
        self._mac_key = okm[:32]
        self._check = hmac.new(okm[32:], b"key-check", hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never the key
        return f"LocalMasterKey({self._key_id!r})"

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, secret: bytes) -> str:
        return wrapping.wrap(self._key, self._key_id, secret)

    def unwrap(self, wrapped: str) -> bytes:
        return wrapping.unwrap(self._key, self._key_id, wrapped)

    def key_check(self) -> str:
        return self._check

    def mac(self, digest: bytes) -> str:
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"a manifest MAC covers a {DIGEST_BYTES}-byte digest")
        return hmac.new(self._mac_key, _DOMAIN + digest, hashlib.sha256).hexdigest()

    def check_mac(self, digest: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(digest).encode(), mac.encode())
