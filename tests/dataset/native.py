"""Native-path helpers for the dataset tests: ctx.read/ctx.write's native read and write,
with a test agent's socket and key ids."""

from __future__ import annotations

from typing import Any

import pytest

from jobruntime.dataset.manifest import Manifest
from jobruntime.errors import JobRuntimeError
from jobruntime.native import jvm
from jobruntime.native.errors import typed
from jobruntime.native.read import read
from jobruntime.native.write import write
from tests.dataset.conftest import SENTINEL, Agent


def require_jar(spark: Any) -> None:
    assert jvm.jar_loaded(spark), "build/jobruntime-kms.jar is not on the session's class path"


def forget_verified(spark: Any) -> None:
    """As a fresh JVM: forget the files this one verified (and the footers it serves)."""
    spark.sparkContext._jvm.jobruntime.kms.ConfidentialCryptoFactory.forgetVerified()


def native_read(spark: Any, agent: Agent, dataset: str, uri: str) -> Any:
    require_jar(spark)
    return read(
        spark, uri=uri, dataset=dataset, key_id=agent.key_id(dataset), socket=str(agent.socket)
    )


def native_write(df: Any, agent: Agent, dataset: str, uri: str, key: str | None = None) -> Manifest:
    require_jar(df.sparkSession)
    return write(
        df, uri=uri, dataset=dataset, key_id=key or agent.key_id(dataset), socket=str(agent.socket)
    )


def refused_natively(spark: Any, agent: Agent, uri: str, code: str, dataset: str = "sales") -> str:
    """Read everything natively; the read must fail with ``code``, before or in Spark."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - typed on the driver, or Spark's
        native_read(spark, agent, dataset, uri).collect()
    error = info.value if isinstance(info.value, JobRuntimeError) else typed(info.value)
    assert error is not None, str(info.value)[-2000:]
    assert error.code == code, error.one_line()
    assert SENTINEL not in str(info.value)
    return error.message
