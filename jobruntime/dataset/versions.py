"""Dataset versions: find and check the latest one, and publish a new one atomically.

Layout under a dataset's root::

    _manifests/v000003.json          the manifest of version 3 (created once, never replaced)
    v000003-1a2b3c4d/part-00000.parquet
    _staging/<write id>/...          parts of a write in progress (never read; removed by
                                     its abort, or by the next publish if it died)

Publishing is one create-if-absent of the manifest; until then nothing of a
write is visible. The control plane records each dataset's latest version and
manifest digest, so an older or swapped manifest is refused too.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Sequence
from contextlib import suppress
from typing import Protocol

import pyarrow as pa

from jobruntime.dataset import files, footer
from jobruntime.dataset.errors import (
    FileExtraError,
    FileMissingError,
    FileTruncatedError,
    ManifestMissingError,
    RollbackError,
    VersionConflictError,
    WriteError,
)
from jobruntime.dataset.keyops import MasterKeyOps
from jobruntime.dataset.manifest import (
    FileEntry,
    Manifest,
    encode_schema,
    load_verified,
    parse_unverified,
    seal,
)
from jobruntime.spec.models import utcnow
from jobruntime.storage.base import Storage, StorageError, StorageNotFoundError

MANIFESTS = "_manifests"
STAGING = "_staging"
_MANIFEST = re.compile(r"^_manifests/v([0-9]{6})\.json$")


class VersionRegistry(Protocol):
    """Where one dataset's latest version is recorded (the control plane)."""

    def latest(self) -> tuple[int, str] | None: ...

    def record(self, version: int, digest: str) -> None: ...


def manifest_path(version: int) -> str:
    return f"{MANIFESTS}/v{version:06d}.json"


def local_versions(storage: Storage) -> list[int]:
    found = (_MANIFEST.match(o.path) for o in storage.list(MANIFESTS + "/"))
    return sorted(int(m.group(1)) for m in found if m)


def _latest_manifest(
    storage: Storage, name: str, registry: VersionRegistry | None
) -> tuple[int, tuple[int, str] | None, bytes] | None:
    """(version, the control plane's record, manifest bytes): which manifest is the latest."""
    present = local_versions(storage)
    recorded = registry.latest() if registry is not None else None
    # The one the control plane recorded, else the newest present.
    version = recorded[0] if recorded else (present[-1] if present else None)
    if version is None:
        return None
    try:
        return version, recorded, storage.read(manifest_path(version))
    except StorageNotFoundError:
        raise ManifestMissingError(f"{name}: manifest of version {version} is missing") from None


def declared_key_id(storage: Storage, name: str, registry: VersionRegistry | None) -> str | None:
    """The key id the latest manifest names, NOT authenticated, or None if never written.

    Only for a reader that was not told the key id, to choose which key to verify the
    manifest with: :func:`open_latest` then authenticates it under that key id (and
    the key agent refuses a key id that is not the spec's).
    """
    found = _latest_manifest(storage, name, registry)
    if found is None:
        return None
    version, _, data = found
    return parse_unverified(data, name, f"v{version:06d}").key_id


def open_latest(
    storage: Storage, name: str, ops: MasterKeyOps, registry: VersionRegistry | None
) -> Manifest | None:
    """The verified manifest of the latest version, or None for a dataset never written.

    ``name`` is the dataset's URI (it names the dataset in errors and the manifest);
    the manifest must be sealed for ``ops.key_id`` and authenticate under it.
    """
    # 1. Which version: the one the control plane recorded, else the newest present.
    found = _latest_manifest(storage, name, registry)
    if found is None:
        return None
    version, recorded, data = found
    # 2. Its manifest is authentic under this key.
    manifest = load_verified(data, ops, name, f"v{version:06d}")
    # 3. It is the manifest the control plane recorded as latest.
    if registry is not None and recorded is None:
        raise RollbackError(f"{name}: storage has manifests but none is recorded as latest")
    if recorded and manifest.digest != recorded[1]:
        raise RollbackError(f"{name}: manifest v{version:06d} is not the one recorded as latest")
    if manifest.version != version or manifest.dataset != name:
        raise RollbackError(f"{name}: manifest v{version:06d} names another version or dataset")
    # 4. The version's directory holds exactly the files listed, at their sizes.
    check_file_set(storage, manifest, name)
    return manifest


def check_file_set(storage: Storage, manifest: Manifest, name: str) -> None:
    listed = {f.path: f for f in manifest.files}
    stored = {o.path: o.size for o in storage.list(manifest.directory + "/")}
    for path in sorted(set(stored) - set(listed)):
        raise FileExtraError(f"{name}: file {path} is not in manifest v{manifest.version:06d}")
    for path, entry in sorted(listed.items()):
        if path not in stored:
            raise FileMissingError(f"{name}: file {path} is missing")
        if stored[path] != entry.size:
            raise FileTruncatedError(
                f"{name}: file {path} is {stored[path]} bytes, the manifest says {entry.size}"
            )


def new_write_id() -> str:
    return secrets.token_hex(8)


def staging_path(write_id: str, partition: int, attempt: int) -> str:
    return f"{STAGING}/{write_id}/part-{partition:05d}-{attempt}-{secrets.token_hex(4)}.parquet"


def commit(
    storage: Storage,
    name: str,
    ops: MasterKeyOps,
    schema: pa.Schema,
    staged: Sequence[tuple[int, files.WrittenFile]],
    registry: VersionRegistry | None,
) -> Manifest:
    """Check every staged part, move them into a new version and publish its manifest."""
    previous = open_latest(storage, name, ops, registry)
    version = previous.version + 1 if previous else 1
    directory = f"v{version:06d}-{secrets.token_hex(4)}"
    entries: list[FileEntry] = []
    try:
        # 1. One part per partition: a retried task's extra attempt is dropped.
        chosen: dict[int, files.WrittenFile] = {}
        for partition, part in sorted(staged, key=lambda p: (p[0], p[1].path)):
            chosen.setdefault(partition, part)
        # 2. Each part is in staging exactly as its task reported it.
        for i, (_, part) in enumerate(sorted(chosen.items())):
            if storage.size(part.path) != part.size or not hmac.compare_digest(
                footer.of_stored(storage, part.path, part.size) or "", part.footer_sha256
            ):
                raise WriteError(f"{name}: staged part {part.path} changed after its task")
            target = f"{directory}/part-{i:05d}.parquet"
            storage.rename(part.path, target)
            entries.append(
                FileEntry(
                    path=target,
                    size=part.size,
                    footer_sha256=part.footer_sha256,
                    rows=part.rows,
                    row_groups=part.row_groups,
                )
            )
        # 3. The manifest, sealed under the dataset key, is created once: that publishes.
        manifest = seal(
            Manifest(
                dataset=name,
                key_id=ops.key_id,
                version=version,
                directory=directory,
                previous=previous.digest if previous else None,
                created_at=utcnow(),
                arrow_schema=encode_schema(schema),
                rows=sum(e.rows for e in entries),
                files=entries,
                key_check="0" * 64,
            ),
            ops,
        )
        if not storage.create(manifest_path(version), manifest.model_dump_json().encode()):
            raise VersionConflictError(f"{name}: version {version} was published by another write")
    except BaseException:
        storage.delete_prefix(directory + "/")
        raise
    # 4. The control plane records it as latest; then staging is cleared.
    if registry is not None:
        registry.record(version, manifest.digest)
    sweep_staging(storage, keep=_write_ids(staged))
    return manifest


def abort(storage: Storage, write_id: str) -> None:
    storage.delete_prefix(f"{STAGING}/{write_id}/")


def _write_ids(staged: Sequence[tuple[int, files.WrittenFile]]) -> set[str]:
    return {p.path.split("/")[1] for _, p in staged if p.path.startswith(f"{STAGING}/")}


def sweep_staging(storage: Storage, keep: set[str]) -> None:
    """Remove what other writes left in staging (a driver killed mid-write runs no
    ``abort``), after a publish; ``keep`` names this write's own, which its caller aborts.

    One writer per dataset at a time is the supported case: a second write still staging
    now loses its parts, and its own commit then fails on a missing part, publishing nothing.
    A failure here does not undo the publish that already happened.
    """
    with suppress(StorageError):
        others = {o.path.split("/")[1] for o in storage.list(f"{STAGING}/")} - keep
        for write_id in sorted(others):
            abort(storage, write_id)
