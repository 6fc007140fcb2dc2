"""Throughput of the confidential data source against Spark's native Parquet, on the same data.

One run, one SparkSession (local[2]), one generated table (``spark.range``: id bigint,
region string of 5 values, amount double, ts timestamp), written twice with the same
number of partitions: (a) plaintext Parquet by Spark's native writer (zstd, like ours),
(b) through the confidential data source (PME AES_GCM_V1, zstd, manifest, key agent).
Then both are read back: a full scan touching every column of every row, and a
group-by aggregate. Writes alternate (``--write-repeats``) and reads go round-robin over
the readers (``--repeats``) so that load from anything else on the machine falls on all of
them alike; the best (warm) time of each counts, and every run is printed.

A third reader separates the Python data source path from the cryptography: ``plainpy``,
a Python data source defined here that reads the *plaintext* native files with pyarrow,
one partition per file, exactly as the confidential source does minus hashing and
decryption. Outside Spark, one part file is hashed, decrypted and decoded with pyarrow
(one thread, as a Spark task gets one core) against the same rows in the same layout
without PME and against Spark's plaintext part.

The data is written to a temporary directory under /tmp (about 0.4 GB at 10M rows, plus
Spark's scratch space; refused below 5 GB free) and always deleted; the key agent is the
real server with an in-memory key source on a socket in /dev/shm.

    .venv/bin/python benchmarks/dataset_throughput.py [--rows 10000000] [--partitions 8]
        [--repeats 3] [--write-repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from jobruntime.dataset import files, versions
from jobruntime.datasource.options import AgentRegistry
from jobruntime.keyagent.client import AgentKeyOps, KeyAgentClient
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource
from jobruntime.storage.uri import open_storage

MIN_FREE = 5 * 1024**3
DATASET = "throughput"
KEY_ID = "org-a/throughput"
PARALLELISM = 2  # local[2]
T = TypeVar("T")


# --- a plaintext Python data source: the confidential path minus hashing and decryption ----


class PlainArrowSource(DataSource):
    """Reads a directory of plaintext Parquet files with pyarrow, one partition per file."""

    @classmethod
    def name(cls) -> str:
        return "plainpy"

    def schema(self) -> Any:
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(pq.read_schema(self._files()[0]))

    def _files(self) -> list[str]:
        return sorted(str(p) for p in Path(self.options["path"]).glob("part-*.parquet"))

    def reader(self, schema: Any) -> DataSourceReader:
        return PlainArrowReader(self._files())


class PlainArrowReader(DataSourceReader):
    def __init__(self, paths: list[str]) -> None:
        self._paths = paths

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(p) for p in self._paths]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        yield from pq.ParquetFile(partition.value).iter_batches()


# --- helpers -----------------------------------------------------------------------------


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def mib(n: float) -> str:
    return f"{n / 1024**2:,.1f} MiB"


@contextlib.contextmanager
def key_agent() -> Iterator[Path]:
    key = os.urandom(32)
    directory = Path(tempfile.mkdtemp(prefix="bench-agent-", dir="/dev/shm"))
    server = KeyAgentServer(directory / "agent.sock", StaticKeySource({DATASET: key})).start()
    try:
        yield server.socket_path
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def make_spark() -> Any:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from jobruntime.datasource import register

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("dataset-throughput")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.python.filterPushdown.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    register(spark)
    spark.dataSource.register(PlainArrowSource)
    return spark


def generate(spark: Any, rows: int, partitions: int) -> Any:
    """Deterministic: both writers see exactly the same rows in the same partitions."""
    return spark.range(0, rows, numPartitions=partitions).selectExpr(
        "id",
        "element_at(array('north', 'south', 'east', 'west', 'central'),"
        " CAST(id % 5 AS INT) + 1) AS region",
        "CAST((id * 7919) % 1000003 AS DOUBLE) / 100 AS amount",
        "timestamp_seconds(1700000000 + id) AS ts",
    )


@dataclass
class Read:
    label: str
    best: float
    times: list[float]


def on(query: Callable[[Any], T], reader: Callable[[], Any]) -> Callable[[], T]:
    return lambda: query(reader())


def full_scan(df: Any) -> tuple[Any, ...]:
    """Touches every column of every row (``count()`` alone is answered from footers)."""
    from pyspark.sql import functions as f

    row = df.agg(f.sum("amount"), f.sum("id"), f.max("ts"), f.count("region"), f.count("*")).first()
    return tuple(row)


def group_by(df: Any) -> list[tuple[Any, ...]]:
    from pyspark.sql import functions as f

    rows = df.groupBy("region").agg(f.count("*").alias("n"), f.sum("amount").alias("s")).collect()
    return sorted(tuple(r) for r in rows)


def same(a: Any, b: Any) -> bool:
    """Equal, with doubles compared to 1e-9 (sums of doubles depend on the order)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- outside Spark: where one part's time goes ---------------------------------------------


def drain(batches: Iterator[pa.RecordBatch]) -> int:
    return sum(b.num_rows for b in batches)


def part_breakdown(
    confidential_uri: str, native_dir: Path, socket: Path, repeats: int
) -> dict[str, float]:
    """Seconds for one part, single-threaded pyarrow (a Spark task has one core)."""
    storage = open_storage(confidential_uri)
    registry = AgentRegistry(KeyAgentClient(socket), DATASET)
    ops = AgentKeyOps(KeyAgentClient(socket), DATASET, KEY_ID)  # as an executor does
    manifest = versions.open_latest(storage, confidential_uri, ops, registry)
    assert manifest is not None
    entry = manifest.files[0]
    native_part = sorted(native_dir.glob("part-*.parquet"))[0]
    previous = pa.cpu_count()
    pa.set_cpu_count(1)
    try:
        data = storage.read(entry.path)
        batches = list(files.decrypt(data, ops, confidential_uri, entry.path))
        schema = batches[0].schema
        # The same rows in the same layout without encryption: the cost of PME alone.
        plain_same = _plain_encode(batches, schema)
        # The same rows in row groups of files.ROW_GROUP_ROWS, as the writer intends.
        big = pa.Table.from_batches(batches).combine_chunks()
        big_groups = big.to_batches(max_chunksize=files.ROW_GROUP_ROWS)
        data_big, _, n_big = files.encrypt(big_groups, schema, ops)

        def dec(blob: bytes) -> Callable[[], int]:
            return lambda: drain(files.decrypt(blob, ops, confidential_uri, entry.path))

        steps: dict[str, Callable[[], Any]] = {
            "read_bytes": lambda: storage.read(entry.path),
            "sha256": lambda: hashlib.sha256(data).hexdigest(),
            "read_verified": lambda: files.read_verified(storage, entry, confidential_uri),
            "decrypt": dec(data),
            "plain_same": lambda: drain(pq.ParquetFile(pa.BufferReader(plain_same)).iter_batches()),
            "plain_file": lambda: drain(pq.ParquetFile(native_part).iter_batches()),
            "decrypt_big": dec(data_big),
            "encrypt": lambda: files.encrypt(batches, schema, ops),
            "plain_encode": lambda: _plain_encode(batches, schema),
        }
        # Round-robin, best of each: a burst of load elsewhere does not land on one step only.
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(3 * repeats):
            for name, fn in steps.items():
                times[name].append(timed(fn)[0])
        return {
            "rows": float(entry.rows),
            "groups": float(entry.row_groups),
            "groups_big": float(n_big),
            "enc_size": float(entry.size),
            "plain_size": float(native_part.stat().st_size),
            "files": float(len(manifest.files)),
        } | {name: min(t) for name, t in times.items()}
    finally:
        pa.set_cpu_count(previous)


def _plain_encode(batches: list[pa.RecordBatch], schema: pa.Schema) -> bytes:
    """What files.encrypt does, without encryption properties."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch, row_group_size=files.ROW_GROUP_ROWS)
    return bytes(sink.getvalue().to_pybytes())


# --- the run -------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each read (best counts)")
    ap.add_argument("--write-repeats", type=int, default=2, help="runs of each write")
    ap.add_argument("--tmp", default="/tmp", help="where the temporary data goes")
    args = ap.parse_args()
    rows, parts, repeats = args.rows, args.partitions, max(1, args.repeats)
    write_repeats = max(1, args.write_repeats)

    free = shutil.disk_usage(args.tmp).free
    if free < MIN_FREE:
        print(
            f"refusing to run: {args.tmp} has {free / 1024**3:.1f} GB free, "
            f"this benchmark needs at least {MIN_FREE / 1024**3:.0f} GB for its temporary data",
            file=sys.stderr,
        )
        return 2

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="dataset-throughput-", dir=args.tmp))
    try:
        with key_agent() as socket:
            return run(root, socket, rows, parts, repeats, write_repeats, started)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"temporary data removed: {root} ({'gone' if not root.exists() else 'LEFT'})")


def run(
    root: Path,
    socket: Path,
    rows: int,
    parts: int,
    repeats: int,
    write_repeats: int,
    started: float,
) -> int:
    native_dir = root / "native"
    uri = str(root / "confidential")
    load0 = os.getloadavg()[0]
    print(
        f"rows {rows:,}, partitions {parts}, local[{PARALLELISM}], read repeats {repeats};"
        f" {os.cpu_count()} CPUs, load average {load0:.1f} at start"
    )
    t_spark, spark = timed(make_spark)
    print(f"SparkSession start: {t_spark:.1f} s")

    def confidential() -> Any:
        return (
            spark.read.format("confidential")
            .option("dataset", DATASET)
            .option("keyId", KEY_ID)
            .option("keyAgentSocket", str(socket))
            .load(uri)
        )

    try:
        df = generate(spark, rows, parts)
        # Warm up the JVM and the Python workers on a small write of each kind, not timed.
        small = generate(spark, 10_000, parts)
        small.write.mode("overwrite").option("compression", "zstd").parquet(str(root / "warm"))
        (
            small.write.format("confidential")
            .option("dataset", DATASET)
            .option("keyId", KEY_ID)
            .option("keyAgentSocket", str(socket))
            .mode("overwrite")
            .save(uri)
        )

        # 1. Writes, alternating native and confidential so that load from anything else
        # on the machine falls on both alike; the best of each counts.
        def write_native() -> None:
            df.write.mode("overwrite").option("compression", "zstd").parquet(str(native_dir))

        def write_confidential() -> None:
            (
                df.write.format("confidential")
                .option("dataset", DATASET)
                .option("keyId", KEY_ID)
                .option("keyAgentSocket", str(socket))
                .mode("overwrite")
                .save(uri)
            )

        w_times: dict[str, list[float]] = {"native": [], "confidential": []}
        for _ in range(write_repeats):
            w_times["native"].append(timed(write_native)[0])
            w_times["confidential"].append(timed(write_confidential)[0])
        w_native, w_conf = min(w_times["native"]), min(w_times["confidential"])
        latest = versions.local_versions(open_storage(uri))[-1]
        version_dirs = [p for p in Path(uri).iterdir() if p.name.startswith(f"v{latest:06d}-")]
        size_native, size_conf = du(native_dir), du(version_dirs[0])
        print()
        print(f"writes (best of {write_repeats}, alternating; all runs in brackets)")
        print(f"{'write':<31}{'seconds':>9}{'rows/s':>12}{'on disk':>12}  runs")
        for label, b, times, size in (
            ("native Parquet (zstd)", w_native, w_times["native"], size_native),
            ("confidential (PME + manifest)", w_conf, w_times["confidential"], size_conf),
        ):
            runs = ", ".join(f"{t:.2f}" for t in times)
            print(f"{label:<31}{b:9.2f}{rows / b:12,.0f}{mib(size):>12}  [{runs}]")
        print(f"ratio confidential / native: {w_conf / w_native:.2f}x")

        # 2. Reads, round-robin over the readers `repeats` times, the best of each counts;
        # the answers must agree.
        readers = {
            "native": lambda: spark.read.parquet(str(native_dir)),
            "plainpy": lambda: spark.read.format("plainpy").load(str(native_dir)),
            "confidential": confidential,
        }
        queries = {"full scan": full_scan, "group-by": group_by}
        r_times: dict[tuple[str, str], list[float]] = {(q, n): [] for q in queries for n in readers}
        answers: dict[tuple[str, str], Any] = {}
        skip_times: list[float] = []
        skipped: Any = None
        for _ in range(repeats):
            for query, fn in queries.items():
                for name, make in readers.items():
                    seconds, answers[(query, name)] = timed(on(fn, make))
                    r_times[(query, name)].append(seconds)
            # A confidential read whose filter skips every row group: listing, manifest,
            # hashing, footer decryption; no page is decrypted, decoded or sent to Spark.
            seconds, skipped = timed(
                lambda: confidential().where("id < -1").agg({"amount": "sum"}).first()[0]
            )
            skip_times.append(seconds)
        reads = {k: Read(k[1], min(v), v) for k, v in r_times.items()}
        skip_best = min(skip_times)

        ok = all(
            same(answers[(q, "native")], answers[(q, other)])
            for q in ("full scan", "group-by")
            for other in ("plainpy", "confidential")
        )
        full = answers[("full scan", "native")]
        ok = ok and full[-1] == rows and full[-2] == rows and skipped is None
        print()
        print(f"reads (best of {repeats}, round-robin, warm page cache; all runs in brackets)")
        print(f"{'query':<11}{'reader':<14}{'seconds':>9}{'rows/s':>14}{'x native':>10}  runs")
        for (query, name), r in reads.items():
            base = reads[(query, "native")].best
            runs = ", ".join(f"{t:.2f}" for t in r.times)
            print(
                f"{query:<11}{name:<14}{r.best:9.2f}{rows / r.best:14,.0f}"
                f"{r.best / base:10.2f}  [{runs}]"
            )
        runs = ", ".join(f"{t:.2f}" for t in skip_times)
        print(f"{'skip-all':<11}{'confidential':<14}{skip_best:9.2f}{'-':>14}{'-':>10}  [{runs}]")
        print(f"answers agree across the three readers: {'yes' if ok else 'NO'}")

        # 3. Where one part's time goes, outside Spark.
        bd = part_breakdown(uri, native_dir, socket, repeats)
        n_files = int(bd["files"])
        waves = math.ceil(n_files / PARALLELISM)
        per_task = bd["read_verified"] + bd["decrypt"]
        py_est = per_task * waves
        enc_est = (bd["encrypt"] + bd["sha256"]) * waves
        conf_scan = reads[("full scan", "confidential")].best
        plain_scan = reads[("full scan", "plainpy")].best
        native_scan = reads[("full scan", "native")].best
        rest = conf_scan - py_est
        print()
        print(
            f"one part outside Spark: {int(bd['rows']):,} rows, {mib(bd['enc_size'])} encrypted"
            f" ({int(bd['groups'])} row groups), native plaintext part {mib(bd['plain_size'])};"
            f" pyarrow on 1 thread, best of {3 * repeats}"
        )
        print(f"{'step':<52}{'ms':>8}{'Mrows/s':>9}{'MiB/s':>8}")

        def line(label: str, s: float, size: float | None = None) -> None:
            rate = f"{size / 1024**2 / s:8.0f}" if size else f"{'':>8}"
            print(f"{label:<52}{s * 1000:8.1f}{bd['rows'] / s / 1e6:9.2f}{rate}")

        line("read the file's bytes (page cache)", bd["read_bytes"], bd["enc_size"])
        line("SHA-256 of the ciphertext", bd["sha256"], bd["enc_size"])
        line("read_verified (read + size + SHA-256)", bd["read_verified"], bd["enc_size"])
        line("decrypt + decode (files.decrypt)", bd["decrypt"], bd["enc_size"])
        line("decode, same layout without PME (in memory)", bd["plain_same"])
        line("read + decode Spark's plaintext part (pyarrow)", bd["plain_file"], bd["plain_size"])
        line(
            f"decrypt + decode, same rows in {int(bd['groups_big'])} row groups",
            bd["decrypt_big"],
        )
        line("encrypt + encode (files.encrypt, same batches)", bd["encrypt"])
        line("encode, same writer without PME", bd["plain_encode"])
        print(
            f"PME alone per part: read {(bd['decrypt'] - bd['plain_same']) * 1000:.0f} ms"
            f" ({bd['decrypt'] / bd['plain_same']:.2f}x) + SHA-256 {bd['sha256'] * 1000:.0f} ms;"
            f" write {(bd['encrypt'] - bd['plain_encode']) * 1000:.0f} ms"
            f" ({bd['encrypt'] / bd['plain_encode']:.2f}x) + SHA-256 {bd['sha256'] * 1000:.0f} ms"
        )
        print()
        print(f"full scan, confidential, {conf_scan:.2f} s in Spark, estimated split:")
        print(
            f"  pyarrow work (read_verified + decrypt + decode): {per_task:.3f} s/part x"
            f" {waves} waves ({n_files} parts / {PARALLELISM} cores) = {py_est:.2f} s"
            f" ({py_est / conf_scan:.0%})"
        )
        print(
            f"  the rest, in Spark: Python worker, Arrow batches to the JVM, rows, aggregate,"
            f" scheduling: {rest:.2f} s ({rest / conf_scan:.0%}); for scale, a whole native"
            f" scan (decode + aggregate) takes {native_scan:.2f} s"
        )
        print(
            f"  in Spark: plainpy (same Python path, plaintext) {plain_scan:.2f} s ="
            f" {plain_scan / native_scan:.1f}x native; confidential - plainpy ="
            f" {conf_scan - plain_scan:+.2f} s (hashing, decryption, manifest; noise if < 0);"
            f" skip-all read (fixed costs) {skip_best:.2f} s"
        )
        print(
            f"write, confidential, {w_conf:.2f} s: encrypt + encode + SHA-256 ~{enc_est:.2f} s"
            f" ({enc_est / w_conf:.0%}); the rest is Spark to Python transfer, the commit"
            f" (re-reads and hashes every part on the driver) and scheduling"
        )

        total = time.perf_counter() - started
        gb_native = reads[("group-by", "native")].best
        gb_conf = reads[("group-by", "confidential")].best
        print()
        print("---- summary (paste into README) ----")
        print("$ .venv/bin/python benchmarks/dataset_throughput.py")
        print(
            f"{rows:,} rows (id, region, amount, ts), {parts} partitions, local[{PARALLELISM}],"
            f" zstd both; best of {write_repeats} writes, {repeats} reads (warm page cache)"
        )
        print(f"{'':<11}{'native':>10}{'confidential':>14}{'ratio':>8}{'conf. rows/s':>15}")
        for label, a, b in (
            ("write", w_native, w_conf),
            ("full scan", native_scan, conf_scan),
            ("group-by", gb_native, gb_conf),
        ):
            print(f"{label:<11}{a:9.2f}s{b:13.2f}s{b / a:7.2f}x{rows / b:15,.0f}")
        print(
            f"plaintext through a Python data source (same files): full scan {plain_scan:.2f} s"
            f" = {plain_scan / native_scan:.1f}x native; confidential / that ="
            f" {conf_scan / plain_scan:.2f}x"
        )
        print(
            f"one part, {int(bd['rows']):,} rows, 1 thread: SHA-256 {bd['sha256'] * 1000:.0f} ms,"
            f" decrypt+decode {bd['decrypt'] * 1000:.0f} ms vs decode without PME"
            f" {bd['plain_same'] * 1000:.0f} ms; pyarrow work ~{py_est / conf_scan:.0%} of"
            f" the confidential scan, the rest is Spark (Python worker to JVM, rows, aggregate)"
        )
        print(
            f"answers agree: {'yes' if ok else 'NO'}; whole benchmark {total:.0f} s;"
            f" 1-min load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end"
        )
        print("-------------------------------------")
        return 0 if ok else 1
    finally:
        spark.stop()


if __name__ == "__main__":
    raise SystemExit(main())
