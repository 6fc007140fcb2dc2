"""Every way storage can lie, each refused with its own typed error naming dataset and file.

Storage is untrusted: these tests are the attacker. Spark must fail the read as a
whole; no row of a bad file is returned.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from jobruntime.dataset.manifest import Manifest
from jobruntime.dataset.versions import local_versions, manifest_path
from jobruntime.storage.uri import open_storage
from tests.dataset.conftest import SENTINEL, Agent, sales_table


def written(spark: Any, agent: Agent, tmp_path: Path, partitions: int = 2) -> tuple[str, Path]:
    uri = str(tmp_path / "sales")
    df = spark.createDataFrame(sales_table(2000).to_pandas()).repartition(partitions)
    agent.write(df, "sales", uri)
    return uri, Path(uri)


def parts(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("v*/part-*.parquet"))


def refused(spark: Any, agent: Agent, uri: str, error: str, dataset: str = "sales") -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - Spark wraps it; the text names ours
        agent.reader(spark, dataset, uri).collect()
    text = str(info.value)
    assert error in text, text[-2000:]
    assert SENTINEL not in text
    return text


def test_intact_dataset_reads(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, _ = written(spark, agent, tmp_path)
    assert agent.reader(spark, "sales", uri).count() == 2000


def test_wrong_key_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, _ = written(spark, agent, tmp_path)
    # Read the sales files with the key of another dataset.
    refused(spark, agent, uri, "WrongKeyError", dataset="other")


def test_bit_flip_in_a_file_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    text = refused(spark, agent, uri, "FileCorruptError")
    assert victim.name in text


def test_truncated_file_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[0]
    victim.write_bytes(victim.read_bytes()[:-100])
    text = refused(spark, agent, uri, "FileTruncatedError")
    assert victim.name in text


def test_dropped_file_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[-1]
    victim.unlink()
    text = refused(spark, agent, uri, "FileMissingError")
    assert victim.name in text


def test_added_file_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    first = parts(root)[0]
    extra = first.with_name("part-00099.parquet")
    extra.write_bytes(first.read_bytes())
    text = refused(spark, agent, uri, "FileExtraError")
    assert extra.name in text


def test_swapped_file_between_versions_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    agent.write(spark.createDataFrame(sales_table(100).to_pandas()).coalesce(2), "sales", uri)
    old, new = parts(root)[0], sorted(root.glob("v000002-*/part-00000.parquet"))[0]
    new.write_bytes(old.read_bytes())
    refused(spark, agent, uri, "Error")  # truncated or corrupt, depending on sizes


def test_older_manifest_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    agent.write(spark.createDataFrame(sales_table(10).to_pandas()), "sales", uri)
    v1, v2 = root / manifest_path(1), root / manifest_path(2)
    v2.write_bytes(v1.read_bytes())  # replay version 1 as the latest
    refused(spark, agent, uri, "RollbackError")


def test_deleting_the_newest_manifest_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    agent.write(spark.createDataFrame(sales_table(10).to_pandas()), "sales", uri)
    (root / manifest_path(2)).unlink()  # roll back to version 1 by hiding version 2
    refused(spark, agent, uri, "ManifestMissingError")


def test_missing_manifest_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    (root / manifest_path(1)).unlink()
    refused(spark, agent, uri, "ManifestMissingError")


def test_altered_manifest_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    path = root / manifest_path(1)
    manifest = Manifest.model_validate_json(path.read_bytes())
    path.write_text(manifest.model_copy(update={"rows": manifest.rows + 1}).model_dump_json())
    refused(spark, agent, uri, "ManifestInvalidError")


def test_failed_write_leaves_no_new_version(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    from pyspark.sql.functions import udf

    @udf("long")
    def explode_on_last(x: int) -> int:
        if x == 1999:
            raise ValueError("task failure")
        return x

    bad = spark.createDataFrame(sales_table(2000).to_pandas()).select(
        explode_on_last("id").alias("id")
    )
    with pytest.raises(Exception):  # noqa: B017, PT011 - the task's failure
        agent.write(bad, "sales", uri)
    assert local_versions(open_storage(uri)) == [1]
    assert not list((root / "_staging").glob("*/*")) if (root / "_staging").exists() else True
    assert agent.reader(spark, "sales", uri).count() == 2000


def test_no_plaintext_in_plans_errors_or_logs(
    spark: Any, agent: Agent, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uri, root = written(spark, agent, tmp_path)
    df = agent.reader(spark, "sales", uri).where("id = 7")
    plan = df._jdf.queryExecution().toString()
    assert SENTINEL not in plan
    assert df.collect()[0]["secret"] == SENTINEL  # it is there, and only in the rows
    for f in root.rglob("*"):
        if f.is_file():
            assert SENTINEL.encode() not in f.read_bytes(), f
    assert SENTINEL not in caplog.text
    for key in agent.keys.values():
        assert key.hex() not in caplog.text
