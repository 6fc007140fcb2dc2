"""DSSE envelopes and signature checks on pyca/cryptography alone.

The wire form is securesystemslib's (``payload`` and ``sig`` in base64, the signature
held as hex, unknown signature fields carried), so envelopes written by either read
the same. Verification is the schemes our keys use, fixed by the key itself:
Ed25519, ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384. Importing
``securesystemslib.signer`` would also import every cloud signer it ships (the Azure
SDK among them): several megabytes a sidecar does not need to check a signature.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

_ECDSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
}


class MalformedEnvelope(ValueError):
    """Not a DSSE envelope; the message completes "<which document> ..."."""


@dataclass
class Signature:
    keyid: str
    signature: str
    """Hex, as securesystemslib's ``Signature`` holds it."""
    unrecognized_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Envelope:
    payload: bytes
    payload_type: str
    signatures: dict[str, Signature]

    def pae(self) -> bytes:
        """DSSE's pre-authentication encoding: what every signature covers."""
        payload_type = self.payload_type.encode()
        return b"DSSEv1 %d %b %d %b" % (
            len(payload_type),
            payload_type,
            len(self.payload),
            self.payload,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": _b64enc(self.payload),
            "payloadType": self.payload_type,
            "signatures": [
                {
                    "keyid": s.keyid,
                    "sig": _b64enc(bytes.fromhex(s.signature)),
                    **s.unrecognized_fields,
                }
                for s in self.signatures.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Envelope:
        """``payload``, ``payloadType`` and ``signatures`` [{``keyid``, ``sig``, ...}].

        Raises :class:`MalformedEnvelope` for anything else, naming the problem only.
        """
        payload, payload_type, entries = data["payload"], data["payloadType"], data["signatures"]
        if not isinstance(payload, str) or not isinstance(payload_type, str):
            raise MalformedEnvelope("has a payload or payloadType that is not a string")
        if not isinstance(entries, list):
            raise MalformedEnvelope("has signatures that are not a list")
        signatures: dict[str, Signature] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not {"keyid", "sig"} <= set(entry):
                raise MalformedEnvelope("has malformed signature entries (not {keyid, sig})")
            keyid, sig = entry["keyid"], entry["sig"]
            if not isinstance(keyid, str) or not isinstance(sig, str):
                raise MalformedEnvelope("has a signature whose keyid or sig is not a string")
            if keyid in signatures:
                raise MalformedEnvelope("carries two signatures by one key")
            rest = {k: v for k, v in entry.items() if k not in ("keyid", "sig")}
            signatures[keyid] = Signature(keyid, _b64dec(sig).hex(), rest)
        return cls(_b64dec(payload), payload_type, signatures)


def verify_signature(key: PublicKey, signature_hex: str, data: bytes) -> bool:
    """Whether ``signature_hex`` is ``key``'s signature over ``data`` (in its one scheme)."""
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        return False
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return True
        algorithm = _ECDSA_HASHES.get(key.curve.name)
        if algorithm is None:
            return False
        key.verify(signature, data, ec.ECDSA(algorithm()))
    except (InvalidSignature, ValueError, TypeError):  # any failure is a failed check
        return False
    return True


def _b64enc(data: bytes) -> str:
    return base64.standard_b64encode(data).decode()


def _b64dec(text: str) -> bytes:
    """Standard base64, or its URL-safe alphabet (as securesystemslib reads it)."""
    try:
        data = text.encode()
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            return base64.b64decode(data, altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedEnvelope("has undecodable base64") from None
