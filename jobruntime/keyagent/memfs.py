"""Is a directory on a memory-backed filesystem?

The socket's directory is shared with the pod's other containers; Kubernetes
backs an ``emptyDir`` with ``medium: Memory`` by tmpfs. Requiring tmpfs or ramfs
keeps the socket and anything written next to it (the verified bundle) off disks
the host operator can image. The mount covering a path is the mount point in
``/proc/self/mountinfo`` that is the longest prefix of its real path; a later
line wins a tie because it is mounted over the earlier one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jobruntime.keyagent.errors import UnsafeDirError

MEMORY_FS_TYPES = frozenset({"tmpfs", "ramfs"})
MOUNTINFO = Path("/proc/self/mountinfo")

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as \040, \011, \012, \134.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _covers(mount_point: str, path: str) -> bool:
    return mount_point == "/" or path == mount_point or path.startswith(mount_point + "/")


def filesystem_type(path: Path, mountinfo: Path = MOUNTINFO) -> str:
    """The type (``tmpfs``, ``ext4``...) of the mount the real path lies on."""
    real = os.path.realpath(path)
    best, best_len = "", -1
    for line in mountinfo.read_text().splitlines():
        left, sep, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if not sep or len(fields) < 5 or not after:
            continue
        mount_point = _unescape(fields[4])
        if _covers(mount_point, real) and len(mount_point) >= best_len:
            best, best_len = after[0], len(mount_point)
    return best


def require_memory_fs(directory: Path, mountinfo: Path = MOUNTINFO) -> None:
    """Refuse a directory whose filesystem could put what is in it on a disk."""
    try:
        fstype = filesystem_type(directory, mountinfo)
    except OSError as exc:
        raise UnsafeDirError(f"cannot read {mountinfo}: {exc.strerror}") from None
    if fstype not in MEMORY_FS_TYPES:
        raise UnsafeDirError(
            f"{directory} is on {fstype or 'an unknown filesystem'}, not tmpfs or ramfs; "
            "mount a memory-backed volume there (or pass --insecure-disk-socket for local work)"
        )
