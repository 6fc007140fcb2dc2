"""The confidential Parquet jar (java/jobruntime-kms) for the test session's Spark.

``make jar`` (a prerequisite of ``make unit``) builds it; a test session started
without it builds it here first if it is missing or older than its sources, with the
same script, so the shared SparkSession has it on its class path.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyspark

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "java" / "jobruntime-kms"
JAR = ROOT / "build" / "jobruntime-kms.jar"


def spark_jars() -> Path:
    return Path(pyspark.__file__).parent / "jars"


def build(out: Path) -> Path:
    """Compile the sources with javac against pyspark's jars into ``out``."""
    subprocess.run(
        ["bash", str(SOURCES / "build.sh"), str(spark_jars()), str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out


def stale(jar: Path = JAR) -> bool:
    if not jar.exists():
        return True
    built = jar.stat().st_mtime
    return any(p.stat().st_mtime > built for p in SOURCES.rglob("*") if p.is_file())


def ensure_jar() -> Path | None:
    """The jar, built if needed; None if it cannot be built here (no javac, say)."""
    if stale():
        try:
            build(JAR)
        except (OSError, subprocess.SubprocessError):
            return None
    return JAR
