"""Round trips through the confidential data source on local files, with real Spark."""

from __future__ import annotations

import base64
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobruntime.dataset.versions import local_versions
from jobruntime.storage.uri import open_storage
from tests.dataset.conftest import Agent, sales_table


def rows(df: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in df.collect())


def test_one_partition_round_trip(spark: Any, agent: Agent, tmp_path: Path) -> None:
    table = sales_table(500)
    uri = str(tmp_path / "sales")
    agent.write(spark.createDataFrame(table.to_pandas()).coalesce(1), "sales", uri)
    back = agent.reader(spark, "sales", uri)
    assert back.schema.names == table.schema.names
    assert rows(back) == rows(spark.createDataFrame(table.to_pandas()))
    assert local_versions(open_storage(uri)) == [1]


def test_several_partitions_and_a_new_version(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'sales'}"
    df = spark.range(0, 10_000, numPartitions=4).selectExpr("id", "id % 7 AS bucket")
    agent.write(df, "sales", uri)
    agent.write(df.where("bucket = 3"), "sales", uri)
    back = agent.reader(spark, "sales", uri)
    assert back.count() == df.where("bucket = 3").count()
    assert back.rdd.getNumPartitions() >= 1
    assert local_versions(open_storage(uri)) == [1, 2]


def test_nulls_nested_and_decimal_types(spark: Any, agent: Agent, tmp_path: Path) -> None:
    df = spark.createDataFrame(
        [
            (1, None, Decimal("1.50"), {"a": 1}, [1, 2], ("x", 2.5)),
            (2, "b", None, None, None, None),
        ],
        "id INT, name STRING, price DECIMAL(10,2), tags MAP<STRING,INT>, xs ARRAY<INT>, "
        "inner STRUCT<s: STRING, f: DOUBLE>",
    )
    uri = str(tmp_path / "nested")
    agent.write(df, "nested", uri)
    back = agent.reader(spark, "nested", uri)
    assert back.schema == df.schema
    assert sorted(back.collect(), key=lambda r: r.id) == sorted(df.collect(), key=lambda r: r.id)


def test_timestamps_and_dates_round_trip(spark: Any, agent: Agent, tmp_path: Path) -> None:
    df = spark.sql(
        "SELECT id, TIMESTAMP'2026-01-02 03:04:05' + make_interval(0,0,0,0,0,0,id) AS ts, "
        "TIMESTAMP_NTZ'2026-01-02 03:04:05' AS ntz, DATE'2026-03-04' AS d FROM range(50)"
    )
    uri = str(tmp_path / "nested")
    agent.write(df, "nested", uri)
    back = agent.reader(spark, "nested", uri)
    assert sorted(back.collect()) == sorted(df.collect())


def test_row_groups_are_whole_not_one_per_spark_batch(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    from jobruntime.dataset.manifest import Manifest
    from jobruntime.dataset.versions import manifest_path

    uri = str(tmp_path / "sales")
    agent.write(spark.range(0, 300_000, numPartitions=1), "sales", uri)
    manifest = Manifest.model_validate_json((tmp_path / "sales" / manifest_path(1)).read_bytes())
    assert manifest.files[0].row_groups == 3  # 131,072-row groups, not 30 of Spark's 10,000


def test_empty_dataset(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri = str(tmp_path / "empty")
    agent.write(spark.range(0).selectExpr("id", "CAST(id AS STRING) AS s"), "empty", uri)
    back = agent.reader(spark, "empty", uri)
    assert back.count() == 0
    assert back.schema.names == ["id", "s"]


def test_filters_give_the_same_answer_as_spark(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri = str(tmp_path / "sales")
    df = spark.range(0, 300_000, numPartitions=2)
    agent.write(df, "sales", uri)
    back = agent.reader(spark, "sales", uri)
    assert back.where("id >= 299990").count() == 10
    assert back.where("id = 5").count() == 1
    assert back.where("id < 0").count() == 0


def test_plain_pyarrow_with_a_kms_client_reads_what_spark_wrote(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """Interoperability: standard PME, readable with any KmsClient holding the master key."""
    uri = str(tmp_path / "sales")
    agent.write(spark.range(0, 1000, numPartitions=1), "sales", uri)
    master = agent.keys["sales"]

    # The documented wrapped-key format, written independently (pyarrow ships no stubs).
    class TestKms(pe.KmsClient):  # type: ignore[misc]
        def __init__(self, _: Any) -> None:
            super().__init__()

        def wrap_key(self, key: bytes, key_id: str) -> str:
            nonce = os.urandom(12)
            return base64.b64encode(
                nonce + AESGCM(master).encrypt(nonce, key, key_id.encode())
            ).decode()

        def unwrap_key(self, wrapped: str, key_id: str) -> bytes:
            raw = base64.b64decode(wrapped)
            return AESGCM(master).decrypt(raw[:12], raw[12:], key_id.encode())

    factory = pe.CryptoFactory(TestKms)
    props = factory.file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration()
    )
    (part,) = [p for p in Path(uri).rglob("*.parquet")]
    table = pq.read_table(part, decryption_properties=props)
    assert table.column("id").to_pylist() == list(range(1000))
    meta = pq.ParquetFile(part, decryption_properties=props).metadata
    assert meta.num_row_groups >= 1
    assert part.read_bytes()[-4:] == b"PARE"  # encrypted footer mode
    assert isinstance(table, pa.Table)


def test_azure_blob_round_trip_through_azurite(spark: Any, agent: Agent) -> None:
    """Executors reach Azurite with the connection string from their environment."""
    import secrets

    uri = f"az://t{secrets.token_hex(6)}/datasets/sales"
    table = sales_table(3000)
    agent.write(spark.createDataFrame(table.to_pandas()).repartition(3), "sales", uri)
    back = agent.reader(spark, "sales", uri)
    assert rows(back) == rows(spark.createDataFrame(table.to_pandas()))
    storage = open_storage(uri)
    assert local_versions(storage) == [1]
    assert len([o for o in storage.list() if o.path.endswith(".parquet")]) == 3
    assert not [o for o in storage.list() if o.path.startswith("_staging/")]
