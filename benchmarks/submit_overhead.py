"""What ``jobruntime submit`` costs over a plain ``spark-submit`` of the same query.

The baseline is the same two-table overlap query (``jobs/overlap.py``'s join, group-by
and suppression) run by a plain ``spark-submit`` on the plaintext Parquet files, on
``local[2]``, with Spark's own defaults. The confidential run is ``jobruntime submit``
of ``jobs/overlap.py`` on the same rows encrypted: submit, sign, approve (emulator dev
keys), verify, attest, key agent and heartbeat sidecar, the driver's checks, the
encrypted read and write, the final heartbeat. Runs alternate, so load falls on both.
Also timed: ``submit`` refusing a misspelled ``--param`` (nothing is submitted).

    .venv/bin/python benchmarks/submit_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT  # noqa: E402
from jobruntime.dev.emulator import EmulatorProcess  # noqa: E402
from jobruntime.sparkconf.spark_home import spark_bin, spark_env  # noqa: E402
from scripts.synthetic import customers  # noqa: E402

BIN = Path(sys.executable).parent

PLAIN_QUERY = """
import sys
from pyspark.sql import SparkSession, functions as F

spark = SparkSession.builder.appName("plain-overlap").getOrCreate()
def keyed(df):
    email = F.lower(F.trim(F.col("email")))
    return df.withColumn("match_key", F.sha2(F.concat(F.lit("clean-room"), email), 256))
a = keyed(spark.read.parquet(sys.argv[1])).select("match_key", "segment")
b = keyed(spark.read.parquet(sys.argv[2])).select("match_key")
out = (a.join(b.dropDuplicates(["match_key"]), "match_key").groupBy("segment")
       .agg(F.count("*").alias("customers")).where(F.col("customers") >= 10).orderBy("segment"))
out.write.mode("overwrite").parquet(sys.argv[3])
spark.stop()
"""


def timed(argv: list[str], expect: int = 0) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)
    took = time.perf_counter() - started
    if proc.returncode != expect:
        raise SystemExit(f"{argv[1:3]} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="submit-overhead-"))
    emu = EmulatorProcess(work / "emulator")
    state = ["--emulator-state", str(emu.state)]
    try:
        emu.start()
        a, b = customers()
        plain = {}
        for org, name, df in (("org-a", "customers_a", a), ("org-b", "customers_b", b)):
            csv = work / f"{name}.csv"
            df.to_csv(csv, index=False)
            plain[name] = work / f"{name}.parquet"
            df.to_parquet(plain[name])
            key = [f"{org}/customers", "--measurement", EMULATED_MEASUREMENT.hex()]
            timed([str(BIN / "jobruntime"), "kms", "create-key", *key, "--allow-emulated", *state])
            timed(
                [str(BIN / "jobruntime"), "dataset", "encrypt", str(csv), "--to",
                 f"file://{work / name}", "--key", f"{org}/customers", *state]
            )  # fmt: skip
        script = work / "plain_overlap.py"
        script.write_text(PLAIN_QUERY)
        spark_submit = [str(spark_bin("spark-submit")), "--master", "local[2]"]
        plain_times, conf_times = [], []
        for i in range(args.repeats):
            out = work / f"plain-out-{i}"
            started = time.perf_counter()
            proc = subprocess.run(
                [*spark_submit, str(script), str(plain["customers_a"]),
                 str(plain["customers_b"]), str(out)],
                capture_output=True, text=True, timeout=900, env=spark_env(),
            )  # fmt: skip
            plain_times.append(time.perf_counter() - started)
            if proc.returncode != 0:
                raise SystemExit(f"spark-submit exited {proc.returncode}: {proc.stderr[-1500:]}")
            conf_times.append(
                timed(
                    [
                        str(BIN / "jobruntime"),
                        "submit",
                        "jobs/overlap.py",
                        "--input",
                        f"customers_a=file://{work / 'customers_a'}",
                        "--input",
                        f"customers_b=file://{work / 'customers_b'}",
                        "--output",
                        f"overlap=file://{work / f'overlap-{i}'}",
                        "--param",
                        "k=10",
                        *state,
                    ]
                )
            )
            print(
                f"run {i + 1}: spark-submit {plain_times[-1]:.1f} s, submit {conf_times[-1]:.1f} s"
            )
        refusals = [
            timed(
                [str(BIN / "jobruntime"), "submit", "jobs/overlap.py", "--param", "kk=10", *state],
                expect=25,
            )
            for _ in range(args.repeats)
        ]
    finally:
        emu.stop()
        shutil.rmtree(work, ignore_errors=True)
    p, c = statistics.median(plain_times), statistics.median(conf_times)
    print(f"\n{len(a):,} + {len(b):,} customers, local[2], median of {args.repeats}:")
    print(f"| plain spark-submit of the same query | {p:.1f} s | 1.00x |")
    print(f"| jobruntime submit (confidential, end to end) | {c:.1f} s | {c / p:.2f}x |")
    print(f"| submit refusing a misspelled --param | {statistics.median(refusals):.2f} s | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
