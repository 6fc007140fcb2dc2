"""Interoperability: the files of either path are read by the other, and by plain pyarrow
with a KmsClient written from the documented wrapped-key format alone; and the whole
owner-to-run-to-owner path with the real KMS and an attested key agent, natively."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobruntime.dataset.manifest import Manifest
from jobruntime.dataset.versions import manifest_path
from jobruntime.native.read import read as native_reader
from jobruntime.native.write import write as native_writer
from tests.conftest import Runs
from tests.dataset.conftest import Agent, sales_table
from tests.dataset.native import native_read, native_write, require_jar
from tests.pods import driver_pod_agent


def sales(spark: Any) -> Any:
    return spark.createDataFrame(sales_table(2000).to_pandas()).repartition(3)


def temporal(spark: Any) -> Any:
    return spark.sql(
        "SELECT id, TIMESTAMP'2026-01-02 03:04:05' + make_interval(0,0,0,0,0,0,id) AS ts, "
        "TIMESTAMP_NTZ'2026-01-02 03:04:05' AS ntz, DATE'2026-03-04' AS d, "
        "CAST(id AS DOUBLE) / 3 AS x FROM range(500)"
    ).repartition(2)


def nested(spark: Any) -> Any:
    return spark.createDataFrame(
        [
            (1, None, Decimal("1.50"), {"a": 1}, [1, 2], ("x", 2.5)),
            (2, "b", None, None, None, None),
            (3, "c", Decimal("-7.25"), {}, [], ("", -0.0)),
        ],
        "id INT, name STRING, price DECIMAL(10,2), tags MAP<STRING,INT>, xs ARRAY<INT>, "
        "inner STRUCT<s: STRING, f: DOUBLE>",
    )


FRAMES: dict[str, Callable[[Any], Any]] = {"sales": sales, "temporal": temporal, "nested": nested}


def rows(df: Any) -> list[Any]:
    return sorted((r.asDict(recursive=True) for r in df.collect()), key=repr)


@pytest.mark.parametrize("frame", sorted(FRAMES))
def test_each_path_reads_what_the_other_wrote(
    spark: Any, agent: Agent, tmp_path: Path, frame: str
) -> None:
    df = FRAMES[frame](spark)
    expected = rows(df)
    # Two datasets (each has its own version record in the agent), one per writer.
    by_python, by_native = ("sales", str(tmp_path / "by_python")), ("other", str(tmp_path / "n"))
    agent.write(df, *by_python)
    native_write(df, agent, *by_native)
    for name, uri in (by_python, by_native):
        natively = native_read(spark, agent, name, uri)
        in_python = agent.reader(spark, name, uri)
        # Spark's file sources read every column as nullable; names and types agree.
        assert natively.schema.simpleString() == in_python.schema.simpleString(), uri
        assert rows(natively) == expected, uri
        assert rows(in_python) == expected, uri


class DocumentedKms(pe.KmsClient):  # type: ignore[misc]
    """From docs/keyagent-protocol.md alone: base64(nonce[12] || AES-256-GCM(master, KEK,
    aad = UTF-8 key id)), the masterKeyIdentifier being the key id."""

    master = b""

    def __init__(self, _config: Any) -> None:
        super().__init__()

    def wrap_key(self, key: bytes, key_id: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.master).encrypt(nonce, key, key_id.encode())
        return base64.b64encode(nonce + sealed).decode()

    def unwrap_key(self, wrapped: str, key_id: str) -> bytes:
        raw = base64.b64decode(wrapped)
        return bytes(AESGCM(self.master).decrypt(raw[:12], raw[12:], key_id.encode()))


def test_plain_pyarrow_reads_what_the_native_writer_wrote(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    uri = str(tmp_path / "sales")
    df = sales(spark)
    native_write(df, agent, "sales", uri)
    DocumentedKms.master = agent.keys["sales"]
    props = pe.CryptoFactory(DocumentedKms).file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration()
    )
    manifest = Manifest.model_validate_json((Path(uri) / manifest_path(1)).read_bytes())
    tables = []
    for entry in manifest.files:
        part = Path(uri) / entry.path
        assert part.read_bytes()[-4:] == b"PARE"  # encrypted footer
        assert pq.ParquetFile(part, decryption_properties=props).metadata.num_rows == entry.rows
        tables.append(pq.read_table(part, decryption_properties=props))
    table = pa.concat_tables(tables)
    assert sorted(table.column("id").to_pylist()) == list(range(2000))
    assert table.column("secret").to_pylist().count("SENTINEL-7f3a9c") == 1
    with pytest.raises(OSError, match=r"(?i)decrypt|encrypt|key"):  # nothing reads without the key
        pq.read_table(Path(uri) / manifest.files[0].path)


def test_native_files_refuse_plain_pyarrow_with_another_master_key(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    uri = str(tmp_path / "sales")
    native_write(sales(spark), agent, "sales", uri)
    DocumentedKms.master = agent.keys["other"]
    props = pe.CryptoFactory(DocumentedKms).file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration()
    )
    part = sorted(Path(uri).glob("v*/part-*.parquet"))[0]
    with pytest.raises(Exception):  # noqa: B017, PT011 - pyarrow's InvalidTag, in its own words
        pq.read_table(part, decryption_properties=props)


def jr(runs: Runs, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "jobruntime", *args, "--emulator-state", str(runs.emu.state)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_owner_encrypts_run_reads_and_writes_natively_owner_decrypts(
    spark: Any, runs: Runs, tmp_path: Path, shm_dir: Path
) -> None:
    """The real KMS and an attested driver-pod key agent: the JVM's KEKs go through it."""
    require_jar(spark)
    uris = {n: f"file://{tmp_path / n}" for n in ("customers_a", "customers_b", "overlap")}
    run_id = runs.keyed(uris=uris)
    spec = runs.signed(run_id).spec

    def key(name: str) -> str:
        found = spec.dataset(name)
        assert found is not None
        return found.key_id

    for name, segment in (("customers_a", "gold"), ("customers_b", "silver")):
        src = tmp_path / f"{name}.csv"
        pacsv.write_csv(pa.table({"id": list(range(100)), "segment": [segment] * 100}), src)
        out = jr(runs, "dataset", "encrypt", str(src), "--to", uris[name], "--key", key(name))
        assert out.returncode == 0, out.stderr
    with driver_pod_agent(runs, run_id, shm_dir) as socket:

        def frame(name: str) -> Any:
            return native_reader(
                spark, uri=uris[name], dataset=name, key_id=key(name), socket=str(socket)
            )

        joined = frame("customers_a").unionByName(frame("customers_b"))
        result = joined.groupBy("segment").count()
        manifest = native_writer(
            result,
            uri=uris["overlap"],
            dataset="overlap",
            key_id=key("overlap"),
            socket=str(socket),
        )
        assert manifest.version == 1
        # An input is read only: the attested agent refuses to wrap a KEK for it.
        with pytest.raises(Exception, match=r"keyagent\.not_writable"):
            native_writer(
                result,
                uri=uris["customers_a"],
                dataset="customers_a",
                key_id=key("customers_a"),
                socket=str(socket),
            )
    target = tmp_path / "overlap.parquet"
    out = jr(
        runs, "dataset", "decrypt", uris["overlap"], "--to", str(target), "--key", key("overlap")
    )
    assert out.returncode == 0, out.stderr
    got = {r["segment"]: r["count"] for r in pq.read_table(target).to_pylist()}
    assert got == {"gold": 100, "silver": 100}
