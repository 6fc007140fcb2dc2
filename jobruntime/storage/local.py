"""Storage on the local filesystem: the embedded default, and what tests run against.

Every write goes to a temporary file in the target's directory, is fsynced and then
moved into place, so a crash never leaves a partial object visible under its name.
Files are 0600 and directories 0700: the objects are ciphertext, but their names and
sizes are still nobody else's business.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from jobruntime.storage.base import (
    TEMP_PREFIX,
    ObjectInfo,
    check_delete_prefix,
    check_path,
    check_prefix,
    check_range,
)
from jobruntime.storage.errors import StorageError, StorageExistsError, StorageNotFoundError

FILE_MODE = 0o600
DIR_MODE = 0o700

# Errors meaning "there is no object by that name": a missing file, a directory where
# the object would be, or a file where a parent directory would be.
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)


@contextlib.contextmanager
def _translated(op: str, path: str, *, reading: bool = False) -> Iterator[None]:
    """Turn OSError into the storage errors, naming the relative path only.

    Only reads map "no such file" to ``StorageNotFoundError``: for a write it means a
    parent is a file, which is an I/O failure of the write, not a missing object.
    """
    try:
        yield
    except OSError as exc:
        if reading and exc.errno in _ABSENT:
            raise StorageNotFoundError(f"{path!r} does not exist") from None
        reason = exc.strerror or type(exc).__name__
        raise StorageError(f"cannot {op} {path!r}: {reason}") from None


class LocalStorage:
    """A directory tree under ``root``; the root is created (0700) on first write."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStorage(uri={self.uri!r})"

    def _file(self, path: str) -> Path:
        return self.root.joinpath(*check_path(path).split("/"))

    def _top(self, prefix: str) -> Path:
        """The deepest directory that holds everything under ``prefix``."""
        directory = prefix.rpartition("/")[0]
        return self.root.joinpath(*directory.split("/")) if directory else self.root

    # --- reads -------------------------------------------------------------------

    def read(self, path: str) -> bytes:
        target = self._file(path)
        with _translated("read", path, reading=True):
            return target.read_bytes()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        target = self._file(path)
        check_range(offset, length)
        with _translated("read", path, reading=True), target.open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    def size(self, path: str) -> int:
        target = self._file(path)
        with _translated("stat", path, reading=True):
            info = target.stat()
        if not stat.S_ISREG(info.st_mode):
            raise StorageNotFoundError(f"{path!r} does not exist")
        return info.st_size

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
        except StorageNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        prefix = check_prefix(prefix)
        found: list[ObjectInfo] = []
        for dirpath, _dirs, files in os.walk(self._top(prefix)):
            base = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                rel = name if base == "." else f"{base}/{name}"
                if name.startswith(TEMP_PREFIX) or not rel.startswith(prefix):
                    continue
                try:
                    info = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
                except FileNotFoundError:  # deleted while we walked
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append(ObjectInfo(rel, info.st_size))
        return sorted(found)

    # --- writes ------------------------------------------------------------------

    def _make_dirs(self, directory: Path) -> None:
        """mkdir -p with 0700 at every level (os.makedirs ignores mode for parents)."""
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for level in reversed(missing):
            with contextlib.suppress(FileExistsError):
                level.mkdir(mode=DIR_MODE)

    def _stage(self, target: Path, data: bytes) -> Path:
        """Write ``data`` durably to a fresh temporary file next to ``target``."""
        self._make_dirs(target.parent)
        temp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(12)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp

    @staticmethod
    def _sync_dir(directory: Path) -> None:
        """Make a rename or link durable: fsync the directory that holds the entry."""
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes) -> None:
        target = self._file(path)
        with _translated("write", path):
            temp = self._stage(target, data)
            try:
                os.replace(temp, target)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            self._sync_dir(target.parent)

    def _link_new(self, source: Path, target: Path) -> bool:
        """Give ``source`` the name ``target`` only if no such name exists, atomically."""
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            return False
        self._sync_dir(target.parent)
        return True

    def create(self, path: str, data: bytes) -> bool:
        target = self._file(path)
        with _translated("create", path):
            temp = self._stage(target, data)
            try:
                return self._link_new(temp, target)
            finally:
                temp.unlink(missing_ok=True)

    def rename(self, src: str, dst: str) -> None:
        source, target = self._file(src), self._file(dst)
        if not self.exists(src):
            raise StorageNotFoundError(f"{src!r} does not exist")
        with _translated("rename", src):
            self._make_dirs(target.parent)
            if not self._link_new(source, target):
                raise StorageExistsError(f"cannot rename {src!r}: {dst!r} already exists")
            source.unlink()
            self._sync_dir(source.parent)

    def _delete(self, path: str) -> bool:
        """Unlink one object; False if there was none by that name."""
        target = self._file(path)
        with _translated("delete", path):
            try:
                target.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return False
        return True

    def delete(self, path: str) -> None:
        self._delete(path)

    def delete_prefix(self, prefix: str) -> int:
        prefix = check_delete_prefix(prefix)
        removed = sum(self._delete(info.path) for info in self.list(prefix))
        self._prune_empty_dirs(prefix)
        return removed

    def _prune_empty_dirs(self, prefix: str) -> None:
        """Remove directories a delete_prefix emptied, so the tree does not fill with husks."""
        for dirpath, _dirs, _files in os.walk(self._top(prefix), topdown=False):
            directory = Path(dirpath)
            if directory == self.root:
                continue
            rel = directory.relative_to(self.root).as_posix() + "/"
            if rel.startswith(prefix) or prefix.startswith(rel):
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only succeeds when empty
