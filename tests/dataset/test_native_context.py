"""``ctx.read`` and ``ctx.write`` take Spark's native Parquet path when the jar is on the
class path, and fall back to the Python data source, with a warning in the job's log,
when it is not (or when the dataset is not local)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jobruntime.dataset.manifest import Manifest
from jobruntime.dataset.versions import manifest_path
from jobruntime.job.context import JobContext
from jobruntime.job.log import JobLogger
from jobruntime.native import jvm
from jobruntime.native.options import hadoop_root
from jobruntime.spec.models import Dataset
from tests.dataset.conftest import Agent, key_id, sales_table


def context(spark: Any, agent: Agent, tmp_path: Path) -> JobContext:
    def dataset(name: str) -> Dataset:
        return Dataset(
            name=name, uri=f"file://{tmp_path / name}", key_id=key_id(name), owner="org-a"
        )

    spec = SimpleNamespace(
        run_id="run-native", inputs=[dataset("sales")], outputs=[dataset("sales")]
    )
    log = JobLogger("run-native", "native")
    return JobContext(spark=spark, params={}, spec=spec, log=log, agent_socket=str(agent.socket))  # type: ignore[arg-type]


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("jobruntime.job.")
    ]


def scans(df: Any) -> str:
    return str(df._jdf.queryExecution().executedPlan().toString())


def test_ctx_reads_and_writes_natively_when_the_jar_is_loaded(
    spark: Any, agent: Agent, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert jvm.jar_loaded(spark)
    ctx = context(spark, agent, tmp_path)
    ctx.write(spark.createDataFrame(sales_table(300).to_pandas()).repartition(2), "sales")
    back = ctx.read("sales")
    assert back.count() == 300
    plan = scans(back)
    assert "FileScan parquet" in plan and "PythonDataSource" not in plan, plan
    manifest = Manifest.model_validate_json((tmp_path / "sales" / manifest_path(1)).read_bytes())
    assert manifest.rows == 300 and len(manifest.files) == 2
    assert warnings_in(caplog) == []
    assert set(ctx.published()) == {"sales"}


def test_ctx_falls_back_to_the_python_source_with_a_warning_without_the_jar(
    spark: Any,
    agent: Agent,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(jvm, "jar_loaded", lambda _spark: False)
    ctx = context(spark, agent, tmp_path)
    ctx.write(spark.createDataFrame(sales_table(300).to_pandas()).repartition(2), "sales")
    back = ctx.read("sales")
    assert back.count() == 300
    assert "FileScan parquet" not in scans(back)
    warned = warnings_in(caplog)
    assert [(w["event"], w["dataset"], w["step"]) for w in warned] == [
        ("native_parquet_unavailable", "sales", "jar_not_on_class_path")
    ] * 2


def test_only_local_datasets_take_the_native_path() -> None:
    assert hadoop_root("file:///data/sales") == "file:///data/sales"
    assert hadoop_root("/data/sales/") == "file:///data/sales"
    assert hadoop_root("file:///data/with%20space") == "file:///data/with space"
    assert hadoop_root("az://container/prefix") is None
    assert hadoop_root("relative/path") is None


def test_local_submit_puts_the_built_jar_on_both_class_paths(tmp_path: Path) -> None:
    from jobruntime.dev.submit import native_jar_conf

    assert native_jar_conf(tmp_path / "missing.jar") == {}
    jar = tmp_path / "jobruntime-kms.jar"
    jar.write_bytes(b"PK")
    assert native_jar_conf(jar) == {
        "spark.driver.extraClassPath": str(jar),
        "spark.executor.extraClassPath": str(jar),
    }
