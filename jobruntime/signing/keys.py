"""Signing keys: generation, files, and the key id every check is keyed by.

The key id is the SHA-256 of the public key's DER SubjectPublicKeyInfo, so it is
derived, never trusted from a file. Signing goes through securesystemslib's
``CryptoSigner`` (imported when a key signs: a sidecar only verifies, see ``dsse``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from jobruntime.errors import KeyFileError
from jobruntime.fsutil import write_private

if TYPE_CHECKING:
    from securesystemslib.signer import Signature, SSlibKey

Algorithm = Literal["ed25519", "ecdsa-p256", "ecdsa-p384"]
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "ecdsa-p256", "ecdsa-p384")

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

_SCHEMES = {"secp256r1": "ecdsa-sha2-nistp256", "secp384r1": "ecdsa-sha2-nistp384"}


def key_id(public_key: PublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def scheme_of(public_key: PublicKey) -> str:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    scheme = _SCHEMES.get(public_key.curve.name)
    if scheme is None:
        raise KeyFileError(f"unsupported curve {public_key.curve.name}")
    return scheme


def public_pem(public_key: PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(pem: str | bytes) -> PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyFileError("public key is not a PEM SubjectPublicKeyInfo") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyFileError(f"unsupported public key type {type(key).__name__}")
    scheme_of(key)
    return key


def sslib_key(public_key: PublicKey) -> SSlibKey:
    from securesystemslib.signer import SSlibKey

    return SSlibKey.from_crypto(public_key, keyid=key_id(public_key), scheme=scheme_of(public_key))


class SigningKey:
    """A private key with its derived key id; never printed, never logged."""

    def __init__(self, private_key: PrivateKey) -> None:
        from securesystemslib.signer import CryptoSigner

        self._private = private_key
        self.public_key: PublicKey = private_key.public_key()
        self.keyid = key_id(self.public_key)
        self._signer = CryptoSigner(private_key, sslib_key(self.public_key))

    def __repr__(self) -> str:
        return f"SigningKey(keyid={self.keyid[:16]}…)"

    @classmethod
    def generate(cls, algorithm: Algorithm = "ed25519") -> SigningKey:
        if algorithm == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        curve = ec.SECP256R1() if algorithm == "ecdsa-p256" else ec.SECP384R1()
        return cls(ec.generate_private_key(curve))

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path} is not an unencrypted PKCS#8 PEM private key") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"{path} holds an unsupported key type")
        scheme_of(key.public_key())
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the private key (0600) and its public half beside it (``.pub``)."""
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem)
        path.with_name(path.name + ".pub").write_text(self.public_pem)

    @property
    def public_pem(self) -> str:
        return public_pem(self.public_key)

    def sign(self, data: bytes) -> Signature:
        return self._signer.sign(data)


__all__ = ["ALGORITHMS", "Algorithm", "SigningKey", "key_id", "write_private"]
