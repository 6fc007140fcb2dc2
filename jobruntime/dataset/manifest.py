"""The manifest of one dataset version, authenticated with a key derived from the master key.

It lists every file (size, SHA-256 of the ciphertext, rows), the schema, the version
and the previous manifest's digest, so a dropped, added, swapped, truncated or
replayed file set is detected. It holds no values: row counts and the schema only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Annotated, Literal

import pyarrow as pa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field

from jobruntime.dataset.errors import ManifestInvalidError, WrongKeyError
from jobruntime.errors import JobRuntimeError
from jobruntime.spec.codec import canonical, parse_model, sha256_digest

Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Annotated[str, Field(pattern=r"^v[0-9]{6}-[0-9a-f]{8}/part-[0-9]{5}\.parquet$")]
    size: Annotated[int, Field(ge=0)]
    sha256: Hex
    rows: Annotated[int, Field(ge=0)]
    row_groups: Annotated[int, Field(ge=0)]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    dataset: str
    key_id: str
    version: Annotated[int, Field(ge=1)]
    directory: Annotated[str, Field(pattern=r"^v[0-9]{6}-[0-9a-f]{8}$")]
    previous: str | None
    created_at: datetime
    arrow_schema: str = Field(description="base64 Arrow IPC schema: names and types only")
    rows: Annotated[int, Field(ge=0)]
    files: list[FileEntry]
    key_check: Hex = Field(description="tells a wrong key from an altered manifest")
    mac: str = ""

    @property
    def digest(self) -> str:
        return sha256_digest(canonical(self))

    @property
    def schema(self) -> pa.Schema:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.arrow_schema)))

    def body(self) -> bytes:
        return canonical(self.model_dump(mode="json", exclude={"mac"}))


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def _keys(master_key: bytes, key_id: str) -> tuple[bytes, str]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=None,
        info=b"jobruntime/manifest/v1|" + key_id.encode(),
    ).derive(master_key)
    mac_key = okm[:32]
    check = hmac.new(okm[32:], b"key-check", hashlib.sha256).hexdigest()
    return mac_key, check


def seal(draft: Manifest, master_key: bytes) -> Manifest:
    """Fill in the key check and the MAC over everything else."""
    mac_key, check = _keys(master_key, draft.key_id)
    unsigned = draft.model_copy(update={"key_check": check, "mac": ""})
    mac = hmac.new(mac_key, unsigned.body(), hashlib.sha256).hexdigest()
    return unsigned.model_copy(update={"mac": mac})


def load_verified(data: bytes, master_key: bytes, dataset: str, where: str) -> Manifest:
    """Parse (with the spec limits), then check the key, then the MAC."""
    try:
        manifest = parse_model(Manifest, data, f"manifest {where}")
    except JobRuntimeError:
        raise ManifestInvalidError(f"{dataset}: manifest {where} is malformed") from None
    mac_key, check = _keys(master_key, manifest.key_id)
    if not hmac.compare_digest(check, manifest.key_check):
        raise WrongKeyError(f"{dataset}: the key given is not the key of manifest {where}")
    expected = hmac.new(mac_key, manifest.body(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, manifest.mac):
        raise ManifestInvalidError(f"{dataset}: manifest {where} was altered (MAC mismatch)")
    return manifest
