"""Hostile inputs for the verifier: a client that alters what the emulator answered.

The emulator is real; only the bytes between it and the verifier are changed, as
a network attacker or a compromised proxy would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey

Doc = dict[str, Any]


class TamperingClient(ControlPlaneClient):
    def __init__(
        self,
        *args: Any,
        spec: Callable[[Doc], Doc] | None = None,
        claim: Callable[[Doc], Doc] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self._spec, self._claim = spec, claim

    def signed_run_bytes(self, run_id: str) -> bytes:
        body = super().signed_run_bytes(run_id)
        return json.dumps(self._spec(json.loads(body))).encode() if self._spec else body

    def claim(self, run_id: str, claim_id: str, session: str) -> Doc:
        receipt = super().claim(run_id, claim_id, session)
        return self._claim(receipt) if self._claim else receipt


def payload(doc: Doc) -> Doc:
    return dict(json.loads(base64.b64decode(doc["envelope"]["payload"])))


def with_payload(doc: Doc, raw: bytes, resign: SigningKey | None = None) -> Doc:
    """Replace the spec payload, optionally re-signing it so only the content is wrong."""
    if resign is not None:
        env = envelope.sign(raw, envelope.SPEC_TYPE, [resign])
        return {**doc, "envelope": envelope.to_json(env)}
    unsigned = dict(doc["envelope"])
    unsigned["payload"] = base64.b64encode(raw).decode()
    return {**doc, "envelope": unsigned}


def flip_byte(doc: Doc) -> Doc:
    """Change one byte of the run nonce: the spec stays valid, only its signature breaks."""
    raw = bytearray(base64.b64decode(doc["envelope"]["payload"]))
    i = raw.index(b'"nonce":"') + len(b'"nonce":"')
    raw[i] = ord("0") if raw[i] != ord("0") else ord("1")
    return with_payload(doc, bytes(raw))


def spellings(secret: bytes) -> list[bytes]:
    """Every way a key could be spelled in an answer, a log or a file."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
    ]
