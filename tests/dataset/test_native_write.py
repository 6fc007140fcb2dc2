"""The native writer keeps the Python writer's commit protocol: parts staged, measured by
the task that wrote them, one per partition, checked against their task's digest in
staging, moved into a new version, the manifest published once, the version recorded
and the staging removed whatever happened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobruntime.dataset.errors import WriteError
from jobruntime.dataset.manifest import Manifest
from jobruntime.dataset.versions import local_versions, manifest_path
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.native import jvm
from jobruntime.native import write as native_write_module
from jobruntime.storage.uri import open_storage
from tests.dataset.conftest import Agent, sales_table
from tests.dataset.native import native_read, native_write


def manifest_of(root: Path, version: int) -> Manifest:
    return Manifest.model_validate_json((root / manifest_path(version)).read_bytes())


def test_one_part_per_partition_published_and_recorded(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    uri = str(tmp_path / "sales")
    df = spark.createDataFrame(sales_table(3000).to_pandas()).repartition(3)
    written = native_write(df, agent, "sales", uri)
    root = Path(uri)
    manifest = manifest_of(root, 1)
    assert manifest == written
    assert [f.path.split("/")[1] for f in manifest.files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert manifest.rows == 3000 and sum(f.rows for f in manifest.files) == 3000
    assert all(f.row_groups == 1 for f in manifest.files)
    for entry in manifest.files:  # the task's measurement is what storage holds
        assert (root / entry.path).stat().st_size == entry.size
    recorded = KeyAgentClient(agent.socket).latest_version("sales")
    assert recorded == (1, manifest.digest)
    assert not [p for p in root.rglob("*") if p.is_file() and "_staging" in p.parts]
    assert {p.name for p in root.iterdir()} - {"_staging"} == {"_manifests", manifest.directory}
    # A second write is the next version, chained to the first.
    native_write(df.limit(10), agent, "sales", uri)
    assert manifest_of(root, 2).previous == manifest.digest
    assert native_read(spark, agent, "sales", uri).count() == 10


def test_an_empty_frame_is_a_version_with_its_schema(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    uri = str(tmp_path / "empty")
    native_write(spark.range(0).selectExpr("id", "CAST(id AS STRING) AS s"), agent, "empty", uri)
    back = native_read(spark, agent, "empty", uri)
    assert back.count() == 0
    assert back.schema.names == ["id", "s"]


def test_a_part_altered_in_staging_after_its_task_is_not_published(
    spark: Any, agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage swaps a staged part (same size, same key: a part of an earlier write)
    between the task's commit and the driver's: the task's digest refuses it."""
    uri = str(tmp_path / "sales")
    df = spark.range(0, 4000, numPartitions=2).selectExpr("id % 2000 AS id")
    native_write(df, agent, "sales", uri)
    old = sorted(Path(uri).glob("v000001-*/part-*.parquet"))[0].read_bytes()
    take = jvm.staged_parts

    def swap_after_tasks(spark_: Any, write_id: str) -> str | None:
        reported = take(spark_, write_id)
        assert reported is not None
        first = json.loads(reported)[0]
        staged = Path(uri) / "_staging" / write_id / first["name"]
        assert staged.stat().st_size == len(old)
        staged.write_bytes(old)
        return reported

    monkeypatch.setattr(jvm, "staged_parts", swap_after_tasks)
    with pytest.raises(WriteError, match="changed after its task"):
        native_write(df, agent, "sales", uri)
    assert local_versions(open_storage(uri)) == [1]
    assert not [p for p in Path(uri).rglob("*") if p.is_file() and "_staging" in p.parts]
    assert KeyAgentClient(agent.socket).latest_version("sales") == (
        1,
        manifest_of(Path(uri), 1).digest,
    )


def test_two_parts_for_one_partition_are_refused() -> None:
    """Spark lets one attempt per partition commit; a second report for one is an error."""
    part = {"name": "part-00000-x.parquet", "size": 1, "footer_sha256": "0" * 64, "rows": 1}
    reported = json.dumps([{**part, "partition": 0, "row_groups": 1}] * 2)
    with pytest.raises(WriteError, match="more than one part"):
        native_write_module._staged(reported, "_staging/w", "file:///x")
    with pytest.raises(WriteError, match="reported no parts"):
        native_write_module._staged(None, "_staging/w", "file:///x")


def test_an_input_cannot_be_written(spark: Any, agents: Any, tmp_path: Path) -> None:
    """The agent refuses to wrap a KEK for an input: the task fails with its code."""
    from jobruntime.native.errors import typed

    agent = agents(writable=["other"])
    with pytest.raises(Exception) as info:  # noqa: PT011 - Spark's, typed below
        native_write(spark.range(10), agent, "sales", str(tmp_path / "sales"))
    error = typed(info.value)
    assert error is not None and error.code == "keyagent.not_writable", str(info.value)[-1500:]
    assert not (tmp_path / "sales" / "_manifests").exists()
