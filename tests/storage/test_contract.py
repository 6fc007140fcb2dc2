"""The ``Storage`` contract, checked identically on local disk and on Azurite."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from jobruntime.storage import (
    ObjectInfo,
    Storage,
    StorageError,
    StorageExistsError,
    StorageNotFoundError,
    StoragePathError,
    StorageRangeError,
)

DATA = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


def test_is_a_storage(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    assert storage.uri in repr(storage)


def test_round_trip(storage: Storage) -> None:
    storage.write("a/b/part-0.parquet", DATA)
    storage.write("a/top.bin", b"x")
    storage.write("empty", b"")
    assert storage.read("a/b/part-0.parquet") == DATA
    assert storage.size("a/b/part-0.parquet") == len(DATA)
    assert storage.read("empty") == b""
    assert storage.size("empty") == 0
    assert storage.exists("a/top.bin")
    assert not storage.exists("a")  # a "directory" is not an object
    assert not storage.exists("a/nope")
    assert storage.list() == [
        ObjectInfo("a/b/part-0.parquet", len(DATA)),
        ObjectInfo("a/top.bin", 1),
        ObjectInfo("empty", 0),
    ]


def test_write_replaces(storage: Storage) -> None:
    storage.write("f", b"old contents")
    storage.write("f", b"new")
    assert storage.read("f") == b"new"
    assert storage.list() == [ObjectInfo("f", 3)]


def test_list_prefix_is_a_string_prefix(storage: Storage) -> None:
    for path in ("ds/part-1", "ds/part-2", "ds/part/x", "ds/other", "dsx", "z/ds/part-9"):
        storage.write(path, b"1")
    assert [o.path for o in storage.list("ds/part")] == ["ds/part-1", "ds/part-2", "ds/part/x"]
    assert [o.path for o in storage.list("ds/")] == [
        "ds/other",
        "ds/part-1",
        "ds/part-2",
        "ds/part/x",
    ]
    assert [o.path for o in storage.list("ds")][-1] == "dsx"
    assert storage.list("nothing/") == []


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, 4, DATA[:4]),
        (1000, 300, DATA[1000:1300]),
        (len(DATA) - 8, 8, DATA[-8:]),  # a Parquet footer: length + magic
        (len(DATA) - 1, 1, DATA[-1:]),
        (len(DATA) - 4, 100, DATA[-4:]),  # short at the end, like a file read
        (len(DATA), 10, b""),
        (len(DATA) + 50, 10, b""),
        (5, 0, b""),
        (0, len(DATA), DATA),
    ],
)
def test_read_range(storage: Storage, offset: int, length: int, expected: bytes) -> None:
    storage.write("obj", DATA)
    assert storage.read_range("obj", offset, length) == expected


def test_read_range_refuses_negative(storage: Storage) -> None:
    storage.write("obj", DATA)
    with pytest.raises(StorageRangeError) as info:
        storage.read_range("obj", -1, 4)
    assert info.value.code == "storage.range"
    with pytest.raises(StorageRangeError):
        storage.read_range("obj", 0, -4)


def test_not_found_errors_name_the_path(storage: Storage) -> None:
    calls: dict[str, Callable[[], object]] = {
        "read": lambda: storage.read("no/such"),
        "read_range": lambda: storage.read_range("no/such", 0, 1),
        "read_range empty": lambda: storage.read_range("no/such", 0, 0),
        "size": lambda: storage.size("no/such"),
        "rename": lambda: storage.rename("no/such", "else"),
    }
    for name, call in calls.items():
        with pytest.raises(StorageNotFoundError) as info:
            call()
        assert info.value.code == "storage.not_found", name
        assert info.value.exit_code == 23
        assert "'no/such'" in info.value.message, name


def test_create_if_absent(storage: Storage) -> None:
    assert storage.create("lock/_COMMITTED", b"first")
    assert not storage.create("lock/_COMMITTED", b"second")
    assert storage.read("lock/_COMMITTED") == b"first"
    assert storage.list() == [ObjectInfo("lock/_COMMITTED", 5)]  # no staging debris


def test_create_race_has_exactly_one_winner(storage: Storage) -> None:
    threads = 4
    for round_ in range(5):
        path = f"race/{round_}"
        barrier = threading.Barrier(threads)
        results: dict[int, bool] = {}

        def contend(
            i: int, path: str, barrier: threading.Barrier, results: dict[int, bool]
        ) -> None:
            barrier.wait()
            results[i] = storage.create(path, f"writer-{i}".encode())

        workers = [
            threading.Thread(target=contend, args=(i, path, barrier, results))
            for i in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        winners = [i for i, won in results.items() if won]
        assert len(results) == threads
        assert len(winners) == 1, results
        assert storage.read(path) == f"writer-{winners[0]}".encode()
    assert [o.path for o in storage.list()] == [f"race/{r}" for r in range(5)]


def test_rename(storage: Storage) -> None:
    storage.write("staging/part-0", DATA)
    storage.rename("staging/part-0", "final/deep/part-0")
    assert not storage.exists("staging/part-0")
    assert storage.read("final/deep/part-0") == DATA
    assert storage.list() == [ObjectInfo("final/deep/part-0", len(DATA))]


def test_rename_never_overwrites(storage: Storage) -> None:
    storage.write("src", b"new")
    storage.write("dst", b"committed")
    with pytest.raises(StorageExistsError) as info:
        storage.rename("src", "dst")
    assert info.value.code == "storage.exists"
    assert storage.read("src") == b"new"
    assert storage.read("dst") == b"committed"


def test_delete(storage: Storage) -> None:
    storage.write("a/b", b"1")
    storage.delete("a/b")
    assert not storage.exists("a/b")
    storage.delete("a/b")  # missing is fine
    storage.delete("never/was")
    assert storage.list() == []


def test_delete_prefix(storage: Storage) -> None:
    for path in ("run/part-0", "run/part-1", "run/sub/part-2", "runner", "keep/x"):
        storage.write(path, b"1")
    assert storage.delete_prefix("run/") == 3
    assert [o.path for o in storage.list()] == ["keep/x", "runner"]
    assert storage.delete_prefix("run/") == 0
    assert storage.delete_prefix("run") == 1
    assert [o.path for o in storage.list()] == ["keep/x"]


def test_delete_prefix_refuses_the_whole_root(storage: Storage) -> None:
    storage.write("keep", b"1")
    with pytest.raises(StoragePathError):
        storage.delete_prefix("")
    assert storage.exists("keep")


BAD_PATHS = [
    "",
    "/etc/passwd",
    "../escape",
    "a/../../b",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "a/\x00b",
    "a/.tmp-123",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_are_refused_before_any_io(storage: Storage, path: str) -> None:
    for call in (
        lambda: storage.read(path),
        lambda: storage.read_range(path, 0, 1),
        lambda: storage.size(path),
        lambda: storage.exists(path),
        lambda: storage.write(path, b"x"),
        lambda: storage.create(path, b"x"),
        lambda: storage.rename("fine", path),
        lambda: storage.rename(path, "fine"),
        lambda: storage.delete(path),
    ):
        with pytest.raises(StoragePathError) as info:
            call()
        assert info.value.code == "storage.path"
        assert isinstance(info.value, StorageError)
    assert storage.list() == []


@pytest.mark.parametrize("prefix", ["/abs", "../x", "a//", "a/../b/", "\\"])
def test_bad_prefixes_are_refused(storage: Storage, prefix: str) -> None:
    with pytest.raises(StoragePathError):
        storage.list(prefix)
    with pytest.raises(StoragePathError):
        storage.delete_prefix(prefix)
