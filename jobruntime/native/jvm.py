"""Whether this Spark's JVM has the confidential Parquet jar, and the settings a write needs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from jobruntime.native.options import COMMIT_PROTOCOL, FACTORY

COMMIT_PROTOCOL_CONF = "spark.sql.sources.commitProtocolClass"
TIMESTAMP_CONF = "spark.sql.parquet.outputTimestampType"

# The settings of a native confidential write, for its duration: each task's parts are
# measured and reported to the driver by the commit protocol; timestamps are written as
# Parquet's standard microsecond instants, which pyarrow and the Python reader read as
# the Python writer writes them (not Spark's legacy INT96).
WRITE_SETTINGS = {COMMIT_PROTOCOL_CONF: COMMIT_PROTOCOL, TIMESTAMP_CONF: "TIMESTAMP_MICROS"}


def jar_loaded(spark: Any) -> bool:
    """The jar's classes are on the class path Spark loads Parquet's factories with."""
    jvm = spark.sparkContext._jvm
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(FACTORY, False, loader)
    except Exception:  # py4j raises its own error type for a missing class
        return False
    return True


@contextmanager
def session_settings(spark: Any, settings: Mapping[str, str]) -> Iterator[None]:
    """Set SQL settings for a block and put the previous values back afterwards."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def staged_parts(spark: Any, write_id: str) -> str | None:
    """The JSON list of parts a committed write's tasks reported, taken once."""
    value = spark.sparkContext._jvm.jobruntime.kms.StagedParts.take(write_id)
    return str(value) if value is not None else None


def agent_calls(spark: Any) -> int:
    """Key-agent requests this Spark JVM made (driver and local executors), for benchmarks."""
    return int(spark.sparkContext._jvm.jobruntime.kms.KeyAgentKmsClient.agentCalls())
