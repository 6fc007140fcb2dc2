"""A PME file's footer digest: what a schema-2 manifest pins of each file.

The digest is the SHA-256 of the file's first 4 bytes followed by its **footer region**:
the ``FileCryptoMetaData``, the encrypted footer, the footer length and the ``PARE``
magic (the file's last ``8 + footer length`` bytes).

Why that is enough. Every other byte of a PME file (``AES_GCM_V1``, encrypted footer,
uniform key) is either inside a module (page header, page, dictionary, column or offset
index, bloom filter) that AES-GCM authenticates under the file's data key, with an AAD
made of the file's unique AAD, the module's type and its row-group, column and page
ordinals, or is a module's 4-byte length prefix. The footer region names the algorithm
and the data key (its key metadata), holds the unique AAD, and locates every column
chunk; the encrypted footer itself is authenticated the same way. So a file of the
manifest's size whose footer digest matches decodes only to what its writer wrote, in
its place: an altered, moved or foreign module fails authentication when it is read,
and an altered length prefix makes its module fail to decode, or is ignored where the
authenticated page header fixes the length (``dataset.file_corrupt`` either way; no
value changes). Readers must decode with the verified footer region itself, never a
second read of it (the native path serves it from memory: ``VerifiedLocalFileSystem``).

Checking it reads a few KiB instead of the whole file: a selective query keeps Spark's
row-group pruning. ``java/jobruntime-kms`` (``FileCheck``) computes the same digest.
"""

from __future__ import annotations

import hashlib

from jobruntime.storage.base import Storage

MAGIC = b"PARE"
HEAD = 4
TAIL = 8


def region_start(size: int, last8: bytes) -> int | None:
    """Where the footer region starts, or None if this is no PME file with an encrypted footer."""
    if size < HEAD + TAIL or len(last8) != TAIL or last8[4:] != MAGIC:
        return None
    length = int.from_bytes(last8[:4], "little")
    start = size - TAIL - length
    if length == 0 or start < HEAD:
        return None
    return start


def digest(head: bytes, region: bytes) -> str:
    return hashlib.sha256(head + region).hexdigest()


def of_bytes(data: bytes) -> str | None:
    """The footer digest of a whole file in memory; None if it has no encrypted footer."""
    start = region_start(len(data), data[-TAIL:])
    return None if start is None else digest(data[:HEAD], data[start:])


def of_stored(storage: Storage, path: str, size: int) -> str | None:
    """The footer digest of a stored file of ``size`` bytes, reading its ends only."""
    start = region_start(size, storage.read_range(path, max(size - TAIL, 0), TAIL))
    if start is None:
        return None
    return digest(storage.read_range(path, 0, HEAD), storage.read_range(path, start, size - start))
