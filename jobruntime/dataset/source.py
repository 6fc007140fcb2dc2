"""The plaintext a data owner encrypts: a CSV or Parquet file, streamed in batches.

Opening a source reads its first rows, so that a missing, malformed or empty file is
refused before any key is fetched or anything is written. A fault found later, while
the rows are being encrypted, is raised from the batch iterator (the writer then
removes what it staged).

A CSV fault names the file's physical line (1-based, the header is line 1) and the
column (1-based, with its header name), never a value of the file: pyarrow's own
messages quote the offending row or value, so they are read for their numbers only.
pyarrow does not say on which line a fault is; after a fault the file is read again
from the first record of the failing block to find it, with Python's ``csv`` module
for the fields and pyarrow's own CSV conversion for the values.

A source with a header but no rows is refused (:class:`SourceEmptyError`): publishing
it would replace every row of the dataset's latest version with none, which is what a
failed export looks like, not what an owner means.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobruntime.dataset.errors import SourceEmptyError, SourceError, SourceMalformedError
from jobruntime.errors import ConfigError

BATCH_ROWS = 64 * 1024
CSV_BLOCK_BYTES = 1 << 22  # pyarrow infers a CSV's column types from its first block

# The numbers in pyarrow's CSV messages; the rest of those messages quotes data.
_FIELD_COUNT = re.compile(r"CSV parse error: (?:Row #\d+: )?Expected (\d+) columns, got (\d+)")
_CONVERSION = re.compile(r"^In CSV column #(\d+): CSV conversion error to ")
_CHECK_CHUNK = 4096  # values converted at once while looking for the bad one
_SCAN_CHARS = 4 * CSV_BLOCK_BYTES  # how far past the failing block's start a fault is looked for


def open_source(
    path: Path,
    column_types: Mapping[str, pa.DataType] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    block_bytes: int = CSV_BLOCK_BYTES,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The source's schema and its batches, the first of which has been read already.

    ``column_types`` sets CSV columns' types by header name (the others are inferred
    from the first ``block_bytes`` of the file). Raises :class:`SourceError` and its
    kinds, and :class:`~jobruntime.errors.ConfigError` for a column type that names
    no column or is given for a Parquet file.
    """
    suffix = path.suffix.lower()
    if path.is_dir():
        raise SourceError(f"cannot read {path}: it is a directory")
    if suffix == ".csv":
        schema, batches = _open_csv(path, dict(column_types or {}), block_bytes)
    elif suffix == ".parquet":
        if column_types:
            raise ConfigError(f"{path}: column types apply to CSV sources only")
        schema, batches = _open_parquet(path, batch_rows)
    else:
        raise SourceError(f"{path}: only .csv and .parquet sources are supported")
    for first in batches:
        if first.num_rows:
            return schema, itertools.chain([first], batches)
    what = "a header but no rows" if suffix == ".csv" else "no rows"
    raise SourceEmptyError(
        f"{path} has {what}: nothing to encrypt (an empty version would replace the dataset)"
    )


# --- Parquet -----------------------------------------------------------------------------


def _open_parquet(path: Path, batch_rows: int) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc, "a readable Parquet file") from None
    return pf.schema_arrow, _parquet_batches(path, pf, batch_rows)


def _parquet_batches(path: Path, pf: pq.ParquetFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    done = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            done += batch.num_rows
            yield batch
    except (OSError, pa.ArrowException):
        raise SourceMalformedError(
            f"{path}: the Parquet data after row {done:,} cannot be read (corrupt or truncated)"
        ) from None
    finally:
        pf.close()


def _unreadable(path: Path, exc: BaseException, kind: str) -> SourceError:
    """A file that could not be opened (its reason, never pyarrow's message), or that is
    not of its kind."""
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"cannot read {path}: no such file")
    if isinstance(exc, OSError):  # pyarrow's ArrowIOError is OSError
        return SourceError(f"cannot read {path}: {exc.strerror or type(exc).__name__}")
    return SourceMalformedError(f"{path}: not {kind}")


# --- CSV ---------------------------------------------------------------------------------


def _open_csv(
    path: Path, column_types: dict[str, pa.DataType], block_bytes: int
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_bytes),
            convert_options=pacsv.ConvertOptions(column_types=column_types),
        )
    except pa.ArrowInvalid as exc:
        if str(exc).startswith("Empty CSV file"):
            raise SourceEmptyError(f"{path} is empty: it has no header line") from None
        raise _located(path, exc, 0, None, column_types) from None
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc, "a readable CSV file") from None
    unknown = sorted(set(column_types) - set(reader.schema.names))
    if unknown:
        reader.close()
        raise ConfigError(
            f"{path}: a column type names no column of the header: {', '.join(unknown)}"
        )
    return reader.schema, _csv_batches(path, reader, column_types)


def _csv_batches(
    path: Path, reader: pacsv.CSVStreamingReader, column_types: dict[str, pa.DataType]
) -> Iterator[pa.RecordBatch]:
    done = 0  # data records read so far: the failing block starts at the next one
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise _located(path, exc, done, reader.schema, column_types) from None
            except (OSError, pa.ArrowException) as exc:
                raise SourceError(
                    f"cannot read {path} after line {_line_of(path, done) or '?'}: "
                    f"{type(exc).__name__}"
                ) from None
            done += batch.num_rows
            yield batch
    finally:
        reader.close()


def _located(
    path: Path,
    exc: pa.ArrowInvalid,
    done: int,
    schema: pa.Schema | None,
    column_types: Mapping[str, pa.DataType],
) -> SourceError:
    """pyarrow's fault as a one-line error naming line and column, never a value."""
    text = str(exc)  # quotes data: only its numbers are used
    names = schema.names if schema is not None else _header(path)
    if counts := _FIELD_COUNT.search(text):
        return _field_count_error(path, done, names, int(counts[1]), int(counts[2]))
    if conversion := _CONVERSION.match(text):
        index = int(conversion[1])
        name = names[index] if index < len(names) else None
        if schema is not None and index < len(schema):
            target: pa.DataType | None = schema.field(index).type
        else:
            target = column_types.get(name) if name is not None else None
        return _conversion_error(path, done, index, name, target, name in column_types)
    start = _line_of(path, done)
    where = f"at or after line {start}" if start else "in its first block"
    return SourceMalformedError(f"{path}: cannot parse the CSV {where} ({type(exc).__name__})")


def _field_count_error(
    path: Path, done: int, names: Sequence[str], expected: int, got: int
) -> SourceMalformedError:
    found = _first_record(path, done, lambda fields: len(fields) != expected)
    if found is None:
        start = _line_of(path, done)
        where = f"a line at or after line {start}" if start else "a line"
        return SourceMalformedError(
            f"{path}: {where} has {got} fields where the header has {expected}"
        )
    line, fields = found
    got = len(fields)
    if got > expected:
        column = (
            f"column {expected + 1} is one too many"
            if got == expected + 1
            else (f"columns {expected + 1} to {got} are too many")
        )
    else:
        missing = names[got] if got < len(names) else None
        column = f"column {_column(got, missing)} is missing"
    return SourceMalformedError(
        f"{path}: line {line} has {got} fields where the header has {expected} ({column})"
    )


def _conversion_error(
    path: Path,
    done: int,
    index: int,
    name: str | None,
    target: pa.DataType | None,
    declared: bool,
) -> SourceMalformedError:
    column = f"column {_column(index, name)}"
    first = f"the file's first {CSV_BLOCK_BYTES >> 20} MiB"
    flag = f"--column-type {name or 'NAME'}=TYPE"
    if target is None:
        kind, origin = "of the column's type", ""
    elif pa.types.is_null(target):  # every value of the first block was empty
        kind = "empty"
        origin = f" (the column is empty in {first}, so it has no type; set one with {flag})"
    else:
        kind = "valid UTF-8 text" if _is_text(target) else f"a valid {target}"
        origin = "" if declared else f" (a type inferred from {first}; set another with {flag})"
    line = _first_unconvertible(path, done, index, target) if target is not None else None
    if line is None:
        start = _line_of(path, done)
        where = f"at or after line {start}" if start else "in its first block"
        return SourceMalformedError(
            f"{path}: {column} has a value that is not {kind}, {where}{origin}"
        )
    return SourceMalformedError(f"{path}: line {line}, {column}: the value is not {kind}{origin}")


def _column(index: int, name: str | None) -> str:
    """1-based column number and its header name."""
    return f"{index + 1} ({name})" if name else str(index + 1)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


# --- finding the line: the file read again, record by record ------------------------------


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) of every data record, as pyarrow's reader counts them:
    empty lines skipped, the header (the first non-empty record) left out."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        header = False
        last = 0
        try:
            for fields in reader:
                start, last = last + 1, reader.line_num
                if not fields:
                    continue
                if not header:
                    header = True
                    continue
                yield start, fields
        except csv.Error:
            return  # Python's parser gave up where pyarrow's did not: no line to name


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            return next((row for row in csv.reader(handle) if row), [])
    except (OSError, csv.Error):
        return []


def _from(path: Path, done: int) -> Iterator[tuple[int, list[str]]]:
    """The records from data record ``done`` (0-based) on, as far as the block that
    starts there can reach (a fault is in that block: no need to read the whole rest)."""
    budget = _SCAN_CHARS
    try:
        for line, fields in itertools.islice(_records(path), done, None):
            yield line, fields
            budget -= sum(map(len, fields)) + len(fields)
            if budget < 0:
                return
    except OSError:
        return


def _line_of(path: Path, done: int) -> int | None:
    return next((line for line, _ in _from(path, done)), None)


def _first_record(
    path: Path, done: int, bad: Callable[[list[str]], bool]
) -> tuple[int, list[str]] | None:
    return next(((line, f) for line, f in _from(path, done) if bad(f)), None)


def _first_unconvertible(path: Path, done: int, index: int, target: pa.DataType) -> int | None:
    """The line of the first value of column ``index`` pyarrow's CSV reader refuses."""
    chunk: list[tuple[int, str]] = []
    for line, fields in _from(path, done):
        if index < len(fields):
            chunk.append((line, fields[index]))
        if len(chunk) == _CHECK_CHUNK:
            found = _first_refused([v for _, v in chunk], target)
            if found is not None:
                return chunk[found][0]
            chunk = []
    found = _first_refused([v for _, v in chunk], target)
    return chunk[found][0] if found is not None else None


def _first_refused(values: Sequence[str], target: pa.DataType) -> int | None:
    """Index of the first value pyarrow's CSV conversion refuses (bisected), or None."""
    if not values or _converts(values, target):
        return None
    lo, hi = 0, len(values)  # the first refused value is in values[lo:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _converts(values[lo:mid], target):
            lo = mid
        else:
            hi = mid
    return lo


def _converts(values: Sequence[str], target: pa.DataType) -> bool:
    """Whether pyarrow's CSV reader, with the options the source is read with, converts
    every value to ``target``: the values, quoted, as a one-column CSV of that type."""
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([v] for v in values)
    try:
        pacsv.read_csv(
            io.BytesIO(text.getvalue().encode("utf-8", "surrogateescape")),
            read_options=pacsv.ReadOptions(column_names=["v"], use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={"v": target}),
        )
    except pa.ArrowInvalid:
        return False
    return True
