"""What only the local backend promises: file modes, staging files, the root on demand."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from jobruntime.storage import LocalStorage, ObjectInfo, StorageError, StorageNotFoundError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_root_is_created_on_first_write_with_private_modes(tmp_path: Path) -> None:
    root = tmp_path / "missing" / "root"
    store = LocalStorage(root)
    assert store.list() == []  # reads do not create it
    assert not root.exists()
    store.write("a/b/c.bin", b"ciphertext")
    store.create("a/d.bin", b"ciphertext")
    store.write("ren/src", b"1")
    store.rename("ren/src", "x/y/dst")
    for directory in (root, root / "a", root / "a" / "b", root / "x", root / "x" / "y"):
        assert mode(directory) == 0o700, directory
    for file in (root / "a" / "b" / "c.bin", root / "a" / "d.bin", root / "x" / "y" / "dst"):
        assert mode(file) == 0o600, file


def test_modes_do_not_depend_on_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        LocalStorage(tmp_path / "r").write("d/f", b"1")
    finally:
        os.umask(old)
    assert mode(tmp_path / "r" / "d") == 0o700
    assert mode(tmp_path / "r" / "d" / "f") == 0o600


def test_writes_leave_no_staging_files(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("d/f", b"1")
    store.write("d/f", b"2")
    assert not store.create("d/f", b"3")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f"]


def test_list_skips_staging_files_and_symlinks(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("d/f", b"1")
    (tmp_path / "d" / ".tmp-crashed-writer").write_bytes(b"partial")
    (tmp_path / "d" / "link").symlink_to(tmp_path / "d" / "f")
    assert store.list() == [ObjectInfo("d/f", 1)]


def test_uri_is_a_file_uri(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path).uri == tmp_path.absolute().as_uri()


def test_delete_prefix_prunes_emptied_directories(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("ds/run/a/part-0", b"1")
    store.write("ds/run/b/part-1", b"1")
    store.write("ds/keep", b"1")
    assert store.delete_prefix("ds/run/") == 2
    assert not (tmp_path / "ds" / "run").exists()
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["keep"]


def test_a_directory_is_not_an_object(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("d/f", b"1")
    with pytest.raises(StorageNotFoundError):
        store.read("d")
    with pytest.raises(StorageNotFoundError):
        store.size("d")
    store.delete("d")  # nothing to delete
    assert store.exists("d/f")


def test_writing_under_a_file_is_an_io_error(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("f", b"1")
    with pytest.raises(StorageError) as info:
        store.write("f/child", b"2")
    assert info.value.code == "storage.io"
    assert "'f/child'" in info.value.message
    assert str(tmp_path) not in info.value.message  # relative paths only
