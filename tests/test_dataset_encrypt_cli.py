"""``jobruntime dataset encrypt`` through the real command (issue 14, data owners' part):
``--rows-per-file`` is honoured exactly and never writes an empty part, a malformed or
empty source is refused with its line and column but none of its values, and nothing
of a refused or failed encryption is left in storage or in the control plane."""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from jobruntime.cli import main as cli_main
from jobruntime.controlplane.api import DatasetRef
from jobruntime.dataset import files, owner
from jobruntime.dataset.errors import SourceMalformedError
from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.dataset.registry import ControlPlaneRegistry
from jobruntime.dataset.source import open_source
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.storage.local import LocalStorage
from jobruntime.storage.uri import open_storage
from tests.conftest import DEV_POLICY

SECRET = "SECRET-7f3a91"  # a cell value that must never be printed


def jr(emu: EmulatorProcess | None, *args: str) -> subprocess.CompletedProcess[str]:
    conn = ["--emulator-state", str(emu.state)] if emu else []
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", "dataset", *args, *conn],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def key_id(emulator: EmulatorProcess) -> str:
    key = f"org-a/encrypt-{secrets.token_hex(4)}"
    with emulator.client("owner:org-a") as c:
        c.create_key(key, DEV_POLICY)
    return key


def encrypt(
    emu: EmulatorProcess, src: Path, root: Path, key: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return jr(emu, "encrypt", str(src), "--to", str(root), "--key", key, *flags)


def read_back(emu: EmulatorProcess, root: Path, key: str) -> tuple[list[int], list[int]]:
    """Each part's rows and every id in order, through the verified decrypt path."""
    uri = root.as_uri()
    with emu.client("owner:org-a") as c:
        ops = LocalMasterKey(key, c.owner_key(key))
        storage = open_storage(uri)
        manifest = owner.latest(storage, uri, ops, ControlPlaneRegistry(c, uri, key))
    counts, ids = [], []
    for entry in manifest.files:
        data = files.read_verified(storage, entry, uri)
        batches = list(files.decrypt(data, ops, uri, entry.path))
        rows = sum(b.num_rows for b in batches)
        assert rows == entry.rows
        counts.append(rows)
        ids += [i for b in batches for i in b.column("id").to_pylist()]
    assert manifest.rows == sum(counts)
    return counts, ids


def assert_nothing_left(emu: EmulatorProcess, root: Path) -> None:
    """The dataset's directory, new to the command, is not there (not even empty staging
    directories) and the control plane recorded no version."""
    assert not root.exists(), sorted(root.rglob("*"))
    with emu.client("owner:org-a") as c:
        assert c.latest_version(DatasetRef(uri=root.as_uri())) is None


def assert_no_value(done: subprocess.CompletedProcess[str]) -> None:
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "ArrowInvalid" not in done.stderr


def write_csv(path: Path, rows: int) -> Path:
    ids = list(range(rows))
    pacsv.write_csv(pa.table({"id": ids, "amount": [i * 10 for i in ids]}), path)
    return path


# --- --rows-per-file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "per_file", "parts"),
    [
        (5000, "2000", [2000, 2000, 1000]),  # the case from the issue
        (4000, "2000", [2000, 2000]),  # an exact multiple: no empty part
        (3, "1", [1, 1, 1]),
        (5000, None, [5000]),  # the default (1,000,000) is more than the rows
    ],
)
def test_rows_per_file_is_honoured_exactly(
    emulator: EmulatorProcess,
    key_id: str,
    tmp_path: Path,
    rows: int,
    per_file: str | None,
    parts: list[int],
) -> None:
    src = write_csv(tmp_path / "plain.csv", rows)
    root = tmp_path / "ds"
    flags = ["--rows-per-file", per_file] if per_file else []
    done = encrypt(emulator, src, root, key_id, *flags)
    assert done.returncode == 0, done.stderr
    assert f"{rows:,} rows in {len(parts)} files" in done.stdout
    counts, ids = read_back(emulator, root, key_id)
    assert counts == parts
    assert ids == list(range(rows))


def test_parts_cut_across_the_sources_batches(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path
) -> None:
    """A Parquet source read in batches of 7,000 rows: parts of 30,000 span batches."""
    src = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": list(range(70_000))}), src, row_group_size=7_000)
    root = tmp_path / "ds"
    done = encrypt(emulator, src, root, key_id, "--rows-per-file", "30000")
    assert done.returncode == 0, done.stderr
    counts, ids = read_back(emulator, root, key_id)
    assert counts == [30_000, 30_000, 10_000]
    assert ids == list(range(70_000))


@pytest.mark.parametrize("sizes", [[5], [2, 3], [1, 1, 1, 1, 1], [0, 4, 0, 1], [7, 0], [3, 3]])
@pytest.mark.parametrize("per_file", [1, 2, 3, 5, 6, 100])
def test_chunks_are_exact_and_never_empty(sizes: list[int], per_file: int) -> None:
    start = 0
    batches = []
    for size in sizes:
        batches.append(pa.record_batch({"id": list(range(start, start + size))}))
        start += size
    chunks = list(owner._chunks(iter(batches), per_file))
    got = [sum(b.num_rows for b in chunk) for chunk in chunks]
    full, rest = divmod(start, per_file)
    assert got == [per_file] * full + ([rest] if rest else [])
    ids = [i for chunk in chunks for b in chunk for i in b.column("id").to_pylist()]
    assert ids == list(range(start))


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_rows_per_file_below_one_is_refused_by_the_parser(tmp_path: Path, value: str) -> None:
    src = write_csv(tmp_path / "plain.csv", 3)
    done = jr(
        None, "encrypt", str(src), "--to", str(tmp_path / "ds"), "--key", "org-a/k",
        f"--rows-per-file={value}",
    )  # fmt: skip
    assert done.returncode == 2
    assert "argument --rows-per-file:" in done.stderr
    expected = "must be at least 1" if value in ("0", "-1") else "not a whole number"
    assert expected in done.stderr
    assert not (tmp_path / "ds").exists()


# --- malformed and empty sources ----------------------------------------------------------


def test_a_line_with_a_wrong_number_of_fields_names_line_and_column(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path
) -> None:
    src = tmp_path / "plain.csv"
    src.write_text(f"id,name,amount\n1,a,10\n2,b,20\n\n3,c,30,{SECRET}\n4,d,40\n")
    root = tmp_path / "ds"
    done = encrypt(emulator, src, root, key_id)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"jobruntime: source.malformed: {src}: line 5 has 4 fields where the header has 3 "
        "(column 4 is one too many)"
    )
    assert_no_value(done)
    assert done.stdout == ""
    assert_nothing_left(emulator, root)
    # Too few fields: the missing column is named by number and header name.
    src.write_text(f"id,name,amount\n1,{SECRET},10\n2,b\n")
    done = encrypt(emulator, src, root, key_id)
    assert done.returncode == 2
    assert "line 3 has 2 fields where the header has 3 (column 3 (amount) is missing)" in (
        done.stderr
    )
    assert_no_value(done)
    assert_nothing_left(emulator, root)


def test_a_value_of_the_wrong_type_names_line_and_column(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path
) -> None:
    src = tmp_path / "plain.csv"
    # A quoted value spanning two lines: the fault is on line 5, the fourth record.
    src.write_text(f'id,name,amount\n1,a,10\n2,"two\nlines",20\n3,c,{SECRET}\n4,d,40\n')
    root = tmp_path / "ds"
    done = encrypt(emulator, src, root, key_id, "--column-type", "amount=int64")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"jobruntime: source.malformed: {src}: line 5, column 3 (amount): "
        "the value is not a valid int64"
    )
    assert_no_value(done)
    assert_nothing_left(emulator, root)
    # Without the declared type, the column is read as text and the file encrypts.
    assert encrypt(emulator, src, root, key_id).returncode == 0


def test_a_fault_after_parts_were_written_leaves_nothing(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path
) -> None:
    """Over 4 MiB: amount is inferred as int64 from the first block, parts of that block
    are encrypted and staged, then a value in the second block is not a number."""
    rows, bad = 250_000, 200_000
    lines = ["id,name,amount"] + [f"{i},name-{i:08d},{i * 10}" for i in range(rows)]
    lines[bad + 1] = f"{bad},name-{bad:08d},{SECRET}"
    src = tmp_path / "big.csv"
    src.write_text("\n".join(lines) + "\n")
    assert sum(len(x) + 1 for x in lines[: bad + 1]) > 1 << 22  # past pyarrow's first block
    root = tmp_path / "ds"
    done = encrypt(emulator, src, root, key_id, "--rows-per-file", "50000")
    assert done.returncode == 2, done.stderr
    line = bad + 2  # the header is line 1
    assert f"{src}: line {line}, column 3 (amount): the value is not a valid int64" in (done.stderr)
    assert "--column-type amount=TYPE" in done.stderr  # says how to read it otherwise
    assert_no_value(done)
    assert_nothing_left(emulator, root)
    # Into a dataset that has a version: that version stays the latest, untouched.
    kept = tmp_path / "kept"
    assert encrypt(emulator, write_csv(tmp_path / "v1.csv", 10), kept, key_id).returncode == 0
    before = sorted(p for p in kept.rglob("*") if p.is_file())
    assert encrypt(emulator, src, kept, key_id, "--rows-per-file", "50000").returncode == 2
    assert sorted(p for p in kept.rglob("*") if p.is_file()) == before
    assert read_back(emulator, kept, key_id) == ([10], list(range(10)))


def test_parts_staged_before_a_fault_are_removed(tmp_path: Path) -> None:
    """In process, to see the parts that were written: staged, then removed."""
    src = tmp_path / "plain.csv"
    lines = ["id,amount"] + [f"{i},{i}" for i in range(3000)]
    lines[2500] = f"2499,{SECRET}"
    src.write_text("\n".join(lines) + "\n")
    written: list[str] = []

    class Recording(LocalStorage):
        def write(self, path: str, data: bytes) -> None:
            written.append(path)
            super().write(path, data)

    storage = Recording(tmp_path / "ds")
    schema, batches = open_source(src, block_bytes=4096)
    ops = LocalMasterKey("org-a/local", os.urandom(32))
    with pytest.raises(SourceMalformedError) as caught:
        owner.encrypt(schema, batches, storage, storage.uri, ops, None, rows_per_file=500)
    assert "line 2501, column 2 (amount)" in caught.value.message
    assert SECRET not in caught.value.message
    assert len(written) >= 2 and all(p.startswith("_staging/") for p in written)
    assert storage.list() == []


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        (f"2499,{SECRET},1", "line 2501 has 3 fields where the header has 2 (column 3 is one"),
        (f"2499,{SECRET}", "line 2501, column 2 (note): the value is not empty (the column is "
         "empty in the file's first 4 MiB, so it has no type; set one with --column-type note="),
        ('2499,"a\nb"', "line 2501, column 2 (note): the value is not empty"),
    ],
)  # fmt: skip
def test_a_fault_in_a_later_block_is_found(tmp_path: Path, bad_line: str, expected: str) -> None:
    """pyarrow reads in blocks (4 KiB here) and does not say where in one the fault is."""
    src = tmp_path / "plain.csv"
    lines = ["id,note"] + [f"{i}," for i in range(3000)]
    lines[2500] = bad_line
    src.write_text("\n".join(lines) + "\n")
    _, batches = open_source(src, block_bytes=4096)
    with pytest.raises(SourceMalformedError) as caught:
        sum(b.num_rows for b in batches)
    assert expected in caught.value.message
    assert SECRET not in caught.value.message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,amount\n", "has a header but no rows"),
        ("id,amount\n\n\n", "has a header but no rows"),
        ("", "is empty: it has no header line"),
    ],
)
def test_an_empty_source_is_refused(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path, content: str, message: str
) -> None:
    src = tmp_path / "plain.csv"
    src.write_text(content)
    root = tmp_path / "ds"
    done = encrypt(emulator, src, root, key_id)
    assert done.returncode == 2
    assert done.stderr.startswith(f"jobruntime: source.empty: {src} {message}")
    assert_nothing_left(emulator, root)


def test_an_empty_parquet_source_is_refused(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path
) -> None:
    src = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.int64())}), src)
    done = encrypt(emulator, src, tmp_path / "ds", key_id)
    assert done.returncode == 2
    assert done.stderr.startswith(f"jobruntime: source.empty: {src} has no rows")


def test_a_file_that_is_not_parquet_is_refused(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path
) -> None:
    src = tmp_path / "plain.parquet"
    src.write_text(f"id\n{SECRET}\n")
    done = encrypt(emulator, src, tmp_path / "ds", key_id)
    assert done.returncode == 2
    assert done.stderr.startswith(f"jobruntime: source.malformed: {src}: not a readable Parquet")
    assert SECRET not in done.stderr


def test_a_column_type_must_name_a_column(
    emulator: EmulatorProcess, key_id: str, tmp_path: Path
) -> None:
    src = write_csv(tmp_path / "plain.csv", 3)
    done = encrypt(emulator, src, tmp_path / "ds", key_id, "--column-type", "amont=int64")
    assert done.returncode == 2
    assert "a column type names no column of the header: amont" in done.stderr
    bad_type = encrypt(emulator, src, tmp_path / "ds", key_id, "--column-type", "amount=money")
    assert bad_type.returncode == 2
    assert "argument --column-type: unknown type 'money'" in bad_type.stderr
    assert not (tmp_path / "ds").exists()


# --- help ---------------------------------------------------------------------------------


def test_every_flag_and_positional_has_help_and_there_are_examples() -> None:
    top = cli_main.parser("dataset")
    dataset = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    sub = next(
        a for a in dataset.choices["dataset"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    for name, parser in sub.choices.items():
        undocumented = [a.dest for a in parser._actions if not a.help]
        assert undocumented == [], name
        assert parser.epilog and f"jobruntime dataset {name} " in parser.epilog, name
    shown = jr(None, "encrypt", "--help")
    assert shown.returncode == 0
    assert "examples:" in shown.stdout and "--rows-per-file N" in shown.stdout
    assert "source.empty" in shown.stdout  # what an empty source does is documented
