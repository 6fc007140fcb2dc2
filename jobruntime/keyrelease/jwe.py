"""Keys on the wire: JWE (ECDH-ES+A256KW, A256GCM) to a pod's ephemeral P-384 key.

jwcrypto does the JOSE work; this module fixes the algorithms so neither side can
be talked into a weaker one.
"""

from __future__ import annotations

import json
from typing import Any

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException

from jobruntime.errors import JobRuntimeError

ALG, ENC = "ECDH-ES+A256KW", "A256GCM"


class KeyWrapError(JobRuntimeError):
    """A wrapped key could not be produced or opened."""

    code = "keyrelease.wrap"
    exit_code = 19


def public_key(obj: Any) -> jwk.JWK:
    """Load a peer's public JWK, refusing anything but an EC P-384 public key."""
    if (
        not isinstance(obj, dict)
        or obj.get("kty") != "EC"
        or obj.get("crv") != "P-384"
        or "d" in obj
    ):
        raise KeyWrapError("public_jwk must be an EC P-384 public key without private parts")
    try:
        return jwk.JWK(**obj)
    except (JWException, ValueError, TypeError):
        raise KeyWrapError("public_jwk is not a valid EC P-384 key") from None


def wrap(secret: bytes, recipient: jwk.JWK) -> str:
    token = jwe.JWE(secret, json.dumps({"alg": ALG, "enc": ENC}))
    token.add_recipient(recipient)
    return str(token.serialize(compact=True))


class EphemeralKey:
    """The pod's per-process key pair; its private half never leaves memory."""

    def __init__(self) -> None:
        self._key = jwk.JWK.generate(kty="EC", crv="P-384")

    def __repr__(self) -> str:
        return f"EphemeralKey({self.thumbprint[:12]}…)"

    @property
    def public_jwk(self) -> dict[str, Any]:
        return dict(json.loads(self._key.export_public()))

    @property
    def thumbprint(self) -> str:
        return str(self._key.thumbprint())

    def unwrap(self, compact: str) -> bytes:
        token = jwe.JWE()
        try:
            token.deserialize(compact, key=self._key)
        except (JWException, ValueError):
            raise KeyWrapError("a released key could not be unwrapped") from None
        header = token.jose_header
        if header.get("alg") != ALG or header.get("enc") != ENC:
            raise KeyWrapError("a released key used an unexpected algorithm")
        return bytes(token.payload)


def sign(key: EphemeralKey, payload: bytes) -> str:
    """Compact JWS (ES384) by the pod's ephemeral key: proves the attested pod sent it."""
    token = jws.JWS(payload)
    token.add_signature(key._key, alg="ES384", protected=json.dumps({"alg": "ES384"}))
    return str(token.serialize(compact=True))


def verify(public: jwk.JWK, compact: str) -> bytes:
    token = jws.JWS()
    try:
        token.deserialize(compact)
        token.verify(public, alg="ES384")
    except (JWException, ValueError):
        raise KeyWrapError("a signature by the attested key does not verify") from None
    return bytes(token.payload)


def thumbprint(key: jwk.JWK) -> str:
    return str(key.thumbprint())
