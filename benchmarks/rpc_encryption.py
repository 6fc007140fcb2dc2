"""Spark RPC encryption: a shuffle-heavy job on the local standalone cluster, three ways.

In one run: ``spark-conf/`` as shipped (AES/GCM/NoPadding, auth engine 2), the same
with Spark's old default cipher (AES/CTR/NoPadding, unauthenticated, CVE-2025-55039),
and with RPC encryption off (authentication and I/O encryption stay on in all three).
Each variant gets its own cluster (2 workers, 1 core each) from a copy of
``spark-conf/`` with only those lines changed, and one ``spark-submit`` that times
``--repeats`` shuffles of ``--rows`` rows between the two executor JVMs (the
SparkSession's start is not timed). Ratios are against AES-GCM.

    .venv/bin/python benchmarks/rpc_encryption.py [--rows 4000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobruntime.dev.cluster.standalone import StandaloneCluster
from jobruntime.sparkconf.spark_home import default_conf_dir, spark_bin, spark_env

VARIANTS: dict[str, dict[str, str]] = {
    "AES-GCM (shipped)": {},
    "AES-CTR": {"spark.network.crypto.cipher": "AES/CTR/NoPadding"},
    "no RPC encryption": {"spark.network.crypto.enabled": "false"},
}

JOB = """
import sys, time
from pyspark.sql import SparkSession, functions as F
rows, repeats = int(sys.argv[1]), int(sys.argv[2])
spark = SparkSession.builder.getOrCreate()
df = spark.range(rows).select(
    (F.col("id") * 7919 % 1000003).alias("k"), F.sha2(F.col("id").cast("string"), 256).alias("v")
)
df.repartition(4, "k").count()  # warm up the JVMs and code paths, untimed
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    df.repartition(8, "k").groupBy("k").agg(F.max("v")).count()
    times.append(time.perf_counter() - t0)
print("TIMES " + " ".join(f"{t:.3f}" for t in times))
spark.stop()
"""

SUBMIT_CONF = {
    "spark.cores.max": "2",
    "spark.executor.memory": "1g",
    "spark.scheduler.minRegisteredResourcesRatio": "1.0",
    "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "false",
}


def conf_dir(base: Path, changes: dict[str, str]) -> Path:
    """A copy of spark-conf/ with ``changes`` replacing (or adding) those keys."""
    target = base / "conf"
    shutil.copytree(default_conf_dir(), target)
    defaults = target / "spark-defaults.conf"
    text = defaults.read_text()
    for key, value in changes.items():
        line = f"{key} {value}"
        pattern = re.compile(rf"^{re.escape(key)}\s.*$", re.MULTILINE)
        text = pattern.sub(line, text) if pattern.search(text) else f"{text}\n{line}\n"
    defaults.write_text(text)
    return target


def measure(name: str, changes: dict[str, str], rows: int, repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as tmp:
        base = Path(tmp)
        conf = conf_dir(base, changes)
        cluster = StandaloneCluster(base / "cluster", workers=2, conf_dir=conf)
        info = cluster.up()
        try:
            script = base / "job.py"
            script.write_text(JOB)
            args = info.submit_args(base / "submit.properties", SUBMIT_CONF)
            done = subprocess.run(
                [str(spark_bin("spark-submit")), *args, str(script), str(rows), str(repeats)],
                env=spark_env(conf),
                cwd=base,
                capture_output=True,
                text=True,
                timeout=900,
            )
        finally:
            cluster.down()
    if done.returncode != 0:
        raise SystemExit(f"{name}: spark-submit failed:\n{done.stderr[-2000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("TIMES "))
    return [float(t) for t in line.split()[1:]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    results = {
        name: statistics.median(measure(name, changes, args.rows, args.repeats))
        for name, changes in VARIANTS.items()
    }
    base = results["AES-GCM (shipped)"]
    print(f"shuffle of {args.rows:,} rows between 2 executors, median of {args.repeats}:")
    for name, seconds in results.items():
        print(f"  {name:20} {seconds:7.2f} s   ratio to AES-GCM {seconds / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
