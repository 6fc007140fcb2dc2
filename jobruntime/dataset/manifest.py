"""The manifest of one dataset version, authenticated with a key derived from the master key.

It lists every file (size, a SHA-256 of its ciphertext, rows), the schema, the version
and the previous manifest's digest, so a dropped, added, swapped, truncated or
replayed file set is detected. It holds no values: row counts and the schema only.

Schema 2 (written since 2026-11-30) pins each file by its size and **footer digest**
(:mod:`jobruntime.dataset.footer`: PME authenticates every other byte under keys and an
AAD the footer pins), so a reader checks a few KiB per file, not the whole file.
Schema 1 pinned the SHA-256 of the whole file; its manifests are still read.
The key check and the MAC are computed by a :class:`MasterKeyOps` (the key agent, in
a run; see :mod:`jobruntime.dataset.keyops` for the derivation): no key is held here.
"""

from __future__ import annotations

import base64
import hmac
import re
from datetime import datetime
from typing import Annotated, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobruntime.dataset.errors import ManifestInvalidError, WrongKeyError
from jobruntime.dataset.keyops import MasterKeyOps, body_digest
from jobruntime.errors import JobRuntimeError
from jobruntime.spec.codec import canonical, parse_model, sha256_digest

Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_MAC = re.compile(r"[0-9a-f]{64}")


PartPath = Annotated[str, Field(pattern=r"^v[0-9]{6}-[0-9a-f]{8}/part-[0-9]{5}\.parquet$")]


class FileEntry(BaseModel):
    """One file of a schema-2 manifest: pinned by its size and footer digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: PartPath
    size: Annotated[int, Field(ge=0)]
    footer_sha256: Hex
    rows: Annotated[int, Field(ge=0)]
    row_groups: Annotated[int, Field(ge=0)]


class WholeFileEntry(BaseModel):
    """One file of a schema-1 manifest: pinned by its size and the SHA-256 of all of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: PartPath
    size: Annotated[int, Field(ge=0)]
    sha256: Hex
    rows: Annotated[int, Field(ge=0)]
    row_groups: Annotated[int, Field(ge=0)]


AnyFileEntry = FileEntry | WholeFileEntry


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1, 2] = 2
    dataset: str
    key_id: str
    version: Annotated[int, Field(ge=1)]
    directory: Annotated[str, Field(pattern=r"^v[0-9]{6}-[0-9a-f]{8}$")]
    previous: str | None
    created_at: datetime
    arrow_schema: str = Field(description="base64 Arrow IPC schema: names and types only")
    rows: Annotated[int, Field(ge=0)]
    files: list[FileEntry] | list[WholeFileEntry]
    key_check: Hex = Field(description="tells a wrong key from an altered manifest")
    mac: str = ""

    @model_validator(mode="after")
    def _entries_of_its_schema(self) -> Manifest:
        kind = FileEntry if self.schema_version == 2 else WholeFileEntry
        if not all(isinstance(f, kind) for f in self.files):
            raise ValueError(f"schema {self.schema_version} lists files as {kind.__name__}")
        return self

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


def seal(draft: Manifest, ops: MasterKeyOps) -> Manifest:
    """Fill in the key check and the MAC over everything else."""
    if draft.key_id != ops.key_id:
        raise ValueError(f"a manifest for key {draft.key_id} sealed with key {ops.key_id}")
    unsigned = draft.model_copy(update={"key_check": ops.key_check(), "mac": ""})
    return unsigned.model_copy(update={"mac": ops.mac(body_digest(unsigned.body()))})


def parse_unverified(data: bytes, dataset: str, where: str) -> Manifest:
    """Parsed with the spec's size and depth limits; NOT authenticated."""
    try:
        return parse_model(Manifest, data, f"manifest {where}")
    except JobRuntimeError:
        raise ManifestInvalidError(f"{dataset}: manifest {where} is malformed") from None


def load_verified(data: bytes, ops: MasterKeyOps, dataset: str, where: str) -> Manifest:
    """Parse, then check the key id and key, then the MAC."""
    manifest = parse_unverified(data, dataset, where)
    if manifest.key_id != ops.key_id:
        raise WrongKeyError(
            f"{dataset}: manifest {where} is sealed for key {manifest.key_id}, not {ops.key_id}"
        )
    if not hmac.compare_digest(ops.key_check(), manifest.key_check):
        raise WrongKeyError(f"{dataset}: the key given is not the key of manifest {where}")
    if not _MAC.fullmatch(manifest.mac) or not ops.check_mac(
        body_digest(manifest.body()), manifest.mac
    ):
        raise ManifestInvalidError(f"{dataset}: manifest {where} was altered (MAC mismatch)")
    return manifest
