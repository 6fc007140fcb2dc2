"""Small file helpers with no heavy imports (sidecars import this too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def write_private(path: Path, data: bytes) -> None:
    """Create a file only its owner can read, failing if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def open_private(path: Path, *, append: bool = False) -> BinaryIO:
    """Open for writing, truncated (or appended to), readable by its owner only (logs)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = os.O_APPEND if append else os.O_TRUNC
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab" if append else "wb")
