"""Confidential datasets on Spark's native Parquet path, against native plaintext Parquet
and the Python data source, side by side in one run (issue 13).

One SparkSession (local[2]) with the confidential Parquet jar on its class path
(``make jar``), one generated table (``spark.range``: id bigint, amount double, region
string of 5 values, ts timestamp), written by three writers with the same partitions and
codec (zstd, the Python writer's): (a) plaintext Parquet by Spark's native writer,
(b) the confidential native path (``ctx.write``: PME AES_GCM_V1 through the JVM
KmsClient, tasks' digests, the Python writer's commit), (c) the ``confidential`` Python
data source. Each is read back by its own reader: a full scan touching every column of
every row, a group-by, and a selective filter (one id range, where row-group pruning
matters). Writes alternate and reads go round-robin, so that load from anything else on
the machine falls on all of them alike; the best of each counts, every run is printed.

Every "confidential native" read here is a *first* read: the JVM's caches of verified
files and unwrapped KEKs are cleared before it, so each read checks the footer digest of
every file it decodes and asks the key agent for its KEK again, as a job reading its
input once does. "conf. native, warm" is the same read with the files already verified
in this JVM (a job that reads a DataFrame twice): the difference is the cost of the
checks and the KEK unwrap.

Key-agent calls are counted on the socket (a relay in front of the real agent, by op),
for a write and a read with cold caches, at two file counts: they must not grow with the
number of files. The timed runs talk to the agent directly: the relay is the
benchmark's instrument, not a hop a pod has.

The data goes to a temporary directory under /tmp (about 0.5 GB at 10M rows; refused
below 5 GB free) and is always deleted; the key agent is the real server with an
in-memory key source on a socket in /dev/shm.

    .venv/bin/python benchmarks/native_parquet.py [--rows 10000000] [--partitions 8]
        [--repeats 3] [--write-repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource
from jobruntime.native import jvm
from jobruntime.native.read import read as native_read
from jobruntime.native.write import write as native_write

ROOT = Path(__file__).resolve().parent.parent
JAR = ROOT / "build" / "jobruntime-kms.jar"
MIN_FREE = 5 * 1024**3
DATASETS = ("bench_native", "bench_python", "bench_files_a", "bench_files_b")
PARALLELISM = 2  # local[2]
T = TypeVar("T")


def key_id(dataset: str) -> str:
    return f"org-a/{dataset}"


# --- the key agent, behind a relay that counts requests by op ------------------------------


class CountingRelay:
    """Between every client and the agent; counts each request line's op."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.with_name("relay.sock")
        self.ops: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.ops)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as agent:
            agent.connect(str(self.target))
            back = threading.Thread(target=self._pump, args=(agent, client, False), daemon=True)
            back.start()
            self._pump(client, agent, True)
            back.join(30)

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        pending = b""
        try:
            while data := src.recv(65536):
                if requests:
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    with self._lock:
                        for line in lines:
                            self.ops[str(json.loads(line).get("op"))] += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def key_agent() -> Iterator[tuple[str, CountingRelay]]:
    keys = {name: os.urandom(32) for name in DATASETS}
    source = StaticKeySource(keys, key_ids={n: key_id(n) for n in DATASETS})
    directory = Path(tempfile.mkdtemp(prefix="bench-agent-", dir="/dev/shm"))
    server = KeyAgentServer(directory / "agent.sock", source).start()
    relay = CountingRelay(server.socket_path)
    try:
        yield str(server.socket_path), relay
    finally:
        relay.close()
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


# --- Spark ----------------------------------------------------------------------------------


def make_spark() -> Any:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from jobruntime.datasource import register

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("native-parquet")
        .config("spark.driver.extraClassPath", str(JAR))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.python.filterPushdown.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.parquet.compression.codec", "zstd")  # the Python writer's codec
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    register(spark)
    return spark


def cold(spark: Any) -> None:
    """Forget verified files and every cached KEK and KMS client, as a fresh JVM would."""
    j = spark.sparkContext._jvm
    j.jobruntime.kms.ConfidentialCryptoFactory.forgetVerified()
    j.org.apache.parquet.crypto.keytools.KeyToolkit.removeCacheEntriesForAllTokens()


def generate(spark: Any, rows: int, partitions: int) -> Any:
    """Deterministic: every writer sees exactly the same rows in the same partitions."""
    return spark.range(0, rows, numPartitions=partitions).selectExpr(
        "id",
        "CAST((id * 7919) % 1000003 AS DOUBLE) / 100 AS amount",
        "element_at(array('north', 'south', 'east', 'west', 'central'),"
        " CAST(id % 5 AS INT) + 1) AS region",
        "timestamp_seconds(1700000000 + id) AS ts",
    )


def full_scan(df: Any) -> tuple[Any, ...]:
    """Touches every column of every row (``count()`` alone is answered from footers)."""
    from pyspark.sql import functions as f

    row = df.agg(f.sum("amount"), f.sum("id"), f.max("ts"), f.count("region"), f.count("*")).first()
    return tuple(row)


def group_by(df: Any) -> list[tuple[Any, ...]]:
    from pyspark.sql import functions as f

    rows = df.groupBy("region").agg(f.count("*").alias("n"), f.sum("amount").alias("s")).collect()
    return sorted(tuple(r) for r in rows)


def selective(rows: int) -> Callable[[Any], tuple[Any, ...]]:
    """One id range of 1,000 rows: row groups outside it are skipped by their statistics."""
    low = rows // 2

    def query(df: Any) -> tuple[Any, ...]:
        from pyspark.sql import functions as f

        hit = df.where((f.col("id") >= low) & (f.col("id") < low + 1000))
        return tuple(hit.agg(f.count("*"), f.sum("amount")).first())

    return query


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def latest_size(dataset: Path) -> int:
    """The bytes of a dataset's latest version (its directory; manifests are tiny)."""
    directories = sorted(p for p in dataset.glob("v*-*") if p.is_dir())
    return du(directories[-1])


def runs_text(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def calls_text(c: Counter[str]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(c.items())) or "none"


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rows", type=int, nargs="+", default=[10_000_000], help="one run per size, in order"
    )
    ap.add_argument("--chart", type=Path, help="write a PNG of the ratios (matplotlib) here")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each read (best counts)")
    ap.add_argument("--write-repeats", type=int, default=2, help="runs of each write")
    ap.add_argument("--tmp", default="/tmp", help="where the temporary data goes")
    args = ap.parse_args()
    if not JAR.is_file():
        print(f"refusing to run: {JAR} is missing; build it with `make jar`", file=sys.stderr)
        return 2
    free = shutil.disk_usage(args.tmp).free
    if free < MIN_FREE:
        print(f"refusing to run: {args.tmp} has {free / 1024**3:.1f} GB free", file=sys.stderr)
        return 2
    results: dict[int, Ratios] = {}
    code = 0
    for rows in args.rows:
        root = Path(tempfile.mkdtemp(prefix="native-parquet-", dir=args.tmp))
        try:
            with key_agent() as (sock, relay):
                ok, results[rows] = run(
                    root, sock, relay, rows, args.partitions, args.repeats, args.write_repeats
                )
                code = code or ok
        finally:
            shutil.rmtree(root, ignore_errors=True)
            print(f"temporary data removed: {root} ({'gone' if not root.exists() else 'LEFT'})")
    if args.chart:
        chart(results, args.chart)
        print(f"chart written to {args.chart}")
    return code


Ratios = dict[str, dict[str, float]]
"""Reader or writer -> operation -> seconds over native plaintext's."""


def chart(results: dict[int, Ratios], path: Path) -> None:
    """Grouped bars: each operation's ratio to native plaintext, one panel per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (rows, ratios) in zip(axes[0], results.items(), strict=True):
        paths = list(ratios)
        ops = list(next(iter(ratios.values())))
        width = 0.8 / len(paths)
        for i, who in enumerate(paths):
            xs = [j + i * width for j in range(len(ops))]
            bars = ax.bar(xs, [ratios[who][op] for op in ops], width, label=who)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.15, color="red", linewidth=0.8, linestyle="--", label="target 1.15x")
        ax.set_xticks([j + width * (len(paths) - 1) / 2 for j in range(len(ops))], ops)
        ax.set_title(f"{rows:,} rows: time / native plaintext Parquet")
        ax.set_ylabel("x native plaintext")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    root: Path,
    sock: str,
    relay: CountingRelay,
    rows: int,
    parts: int,
    repeats: int,
    write_repeats: int,
) -> tuple[int, Ratios]:
    started = time.perf_counter()
    print(
        f"rows {rows:,}, partitions {parts}, local[{PARALLELISM}], read repeats {repeats}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    t_spark, spark = timed(make_spark)
    print(f"SparkSession start: {t_spark:.1f} s; jar loaded: {jvm.jar_loaded(spark)}")
    if not jvm.jar_loaded(spark):
        return 2, {}
    plain_dir = root / "plain"
    uris = {name: f"file://{root / name}" for name in DATASETS}

    def write_plain(df: Any) -> None:
        df.write.mode("overwrite").parquet(str(plain_dir))

    def write_native(df: Any, name: str = "bench_native", via: str = sock) -> Any:
        return native_write(df, uri=uris[name], dataset=name, key_id=key_id(name), socket=via)

    def write_python(df: Any) -> None:
        (
            df.write.format("confidential")
            .option("dataset", "bench_python")
            .option("keyId", key_id("bench_python"))
            .option("keyAgentSocket", sock)
            .mode("overwrite")
            .save(uris["bench_python"])
        )

    def read_native(name: str = "bench_native", keep_caches: bool = False, via: str = sock) -> Any:
        if not keep_caches:
            cold(spark)
        return native_read(spark, uri=uris[name], dataset=name, key_id=key_id(name), socket=via)

    def read_python() -> Any:
        return (
            spark.read.format("confidential")
            .option("dataset", "bench_python")
            .option("keyId", key_id("bench_python"))
            .option("keyAgentSocket", sock)
            .load(uris["bench_python"])
        )

    try:
        # Warm the JVM and the Python workers on small writes of each kind, not timed.
        small = generate(spark, 10_000, parts)
        write_plain(small)
        write_native(small)
        write_python(small)
        full_scan(read_native())
        full_scan(read_python())

        df = generate(spark, rows, parts)
        writers: dict[str, Callable[[], Any]] = {
            "native plaintext": lambda: write_plain(df),
            "confidential native": lambda: write_native(df),
            "python data source": lambda: write_python(df),
        }
        w_times: dict[str, list[float]] = {k: [] for k in writers}
        for _ in range(write_repeats):
            for name, fn in writers.items():
                w_times[name].append(timed(fn)[0])
        w_best = {k: min(v) for k, v in w_times.items()}

        # Like the confidential readers, the plaintext one is told the schema (no footer is
        # read to infer it): the comparison is of reading, not of schema inference.
        schema = df.schema
        readers: dict[str, Callable[[], Any]] = {
            "native plaintext": lambda: spark.read.schema(schema).parquet(str(plain_dir)),
            "confidential native": read_native,
            # The same, with the files already verified in this JVM (not hashed again).
            "conf. native, warm": lambda: read_native(keep_caches=True),
            "python data source": read_python,
        }
        queries: dict[str, Callable[[Any], Any]] = {
            "full scan": full_scan,
            "group-by": group_by,
            "selective filter": selective(rows),
        }
        r_times: dict[tuple[str, str], list[float]] = {(q, r): [] for q in queries for r in readers}
        answers: dict[tuple[str, str], Any] = {}
        for _ in range(repeats):
            for q, query in queries.items():
                for r, reader in readers.items():
                    seconds, answers[(q, r)] = timed(lambda: query(reader()))  # noqa: B023
                    r_times[(q, r)].append(seconds)
        r_best = {k: min(v) for k, v in r_times.items()}
        agree = all(
            same(answers[(q, "native plaintext")], answers[(q, other)])
            for q in queries
            for other in ("confidential native", "conf. native, warm", "python data source")
        )
        agree = agree and answers[("full scan", "native plaintext")][-1] == rows

        # Key-agent calls with cold caches, at two file counts.
        counted: dict[int, tuple[Counter[str], Counter[str]]] = {}
        for files, name in ((parts, "bench_files_a"), (parts * 4, "bench_files_b")):
            frame = generate(spark, rows // 10, files)
            cold(spark)
            before = relay.snapshot()
            write_native(frame, name, via=str(relay.path))
            after_write = relay.snapshot()
            cold(spark)
            full_scan(read_native(name, via=str(relay.path)))
            after_read = relay.snapshot()
            counted[files] = (after_write - before, after_read - after_write)

        sizes = {
            "native plaintext": du(plain_dir),
            "confidential native": latest_size(root / "bench_native"),
            "python data source": latest_size(root / "bench_python"),
        }
    finally:
        spark.stop()

    base_w = w_best["native plaintext"]
    print()
    print(f"writes (best of {write_repeats}, alternating; all runs in brackets)")
    print(f"{'writer':<22}{'seconds':>9}{'x plain':>9}{'rows/s':>13}  runs")
    for name, best in w_best.items():
        print(
            f"{name:<22}{best:9.2f}{best / base_w:9.2f}{rows / best:13,.0f}"
            f"  [{runs_text(w_times[name])}]"
        )
    print(
        "on disk (one version): "
        + ", ".join(f"{k} {v / 1024**2:,.0f} MiB" for k, v in sizes.items())
    )
    print()
    print(f"reads (best of {repeats}, round-robin, warm page cache; all runs in brackets)")
    print(f"{'query':<18}{'reader':<22}{'seconds':>9}{'x plain':>9}  runs")
    for (q, r), best in r_best.items():
        base = r_best[(q, "native plaintext")]
        print(f"{q:<18}{r:<22}{best:9.2f}{best / base:9.2f}  [{runs_text(r_times[(q, r)])}]")
    print(f"answers agree across the three readers: {'yes' if agree else 'NO'}")
    print()
    print("key-agent calls, cold caches (driver's manifest ops and the JVM's KEK ops):")
    for files, (wc, rc) in counted.items():
        print(
            f"  {files:>3} files: write {sum(wc.values()):>2} ({calls_text(wc)}); "
            f"read {sum(rc.values()):>2} ({calls_text(rc)})"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    ratios: Ratios = {}
    for who in ("confidential native", "python data source"):
        ratios[who] = {"write": w_best[who] / base_w}
        for q in queries:
            ratios[who][q] = r_best[(q, who)] / r_best[(q, "native plaintext")]
    return (0 if agree else 1), ratios


if __name__ == "__main__":
    raise SystemExit(main())
