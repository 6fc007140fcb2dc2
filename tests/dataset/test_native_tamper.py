"""Every way storage can lie, on Spark's native Parquet path: refused with the Python
path's typed codes. The driver's checks (manifest MAC, recorded version, file set and
sizes) raise before Spark runs; a file whose footer digest differs from the manifest's,
even one of the same size under the same key, is refused in the JVM before it is decoded;
an altered module of a genuine file fails PME's authentication when Spark decodes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jobruntime.dataset.manifest import Manifest
from jobruntime.dataset.versions import local_versions, manifest_path
from jobruntime.native.errors import typed
from jobruntime.storage.uri import open_storage
from tests.dataset.conftest import Agent, sales_table
from tests.dataset.native import forget_verified, native_read, native_write, refused_natively
from tests.dataset.parts import agent_ops, column_chunks, republish_as_schema_1, write_version


def written(spark: Any, agent: Agent, tmp_path: Path, partitions: int = 2) -> tuple[str, Path]:
    uri = str(tmp_path / "sales")
    df = spark.createDataFrame(sales_table(2000).to_pandas()).repartition(partitions)
    native_write(df, agent, "sales", uri)
    return uri, Path(uri)


def parts(root: Path, version: int = 1) -> list[Path]:
    return sorted(root.glob(f"v{version:06d}-*/part-*.parquet"))


def two_equal_versions(spark: Any, agent: Agent, tmp_path: Path) -> tuple[str, Path]:
    """Versions 1 and 2 of the same rows: parts of equal sizes under the same key."""
    uri = str(tmp_path / "sales")
    # Each partition holds the same rows, so every part has the same size.
    df = spark.range(0, 4000, numPartitions=2).selectExpr("id % 2000 AS id", "id % 10 AS bucket")
    native_write(df, agent, "sales", uri)
    native_write(df, agent, "sales", uri)
    root = Path(uri)
    sizes = {p.stat().st_size for p in parts(root, 1) + parts(root, 2)}
    assert len(sizes) == 1, sizes  # the attacks below keep every size the manifest lists
    return uri, root


def test_intact_dataset_reads(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, _ = written(spark, agent, tmp_path)
    back = native_read(spark, agent, "sales", uri)
    assert back.count() == 2000
    assert back.where("id = 7").count() == 1


def test_bit_flip_in_a_file_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
    assert victim.name in message


def test_a_byte_altered_at_either_end_is_refused_before_decoding(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """The leading magic and the footer region are what the footer digest covers."""
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[0]
    original = victim.read_bytes()
    region = len(original) - 8 - int.from_bytes(original[-8:-4], "little")
    for position in (0, region, (region + len(original)) // 2, len(original) - 8):
        altered = bytearray(original)
        altered[position] ^= 0x01
        victim.write_bytes(bytes(altered))
        message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
        assert f"{victim.name} was replaced or altered" in message, position
    victim.write_bytes(original)
    assert native_read(spark, agent, "sales", uri).count() == 2000


def test_a_row_group_copied_over_another_is_refused(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """Genuine ciphertext of the same part, size and key, one row group over another
    (the Python writer's file, read natively): PME's module AAD names its row group."""
    uri = str(tmp_path / "sales")
    half = 128 * 1024
    write_version(agent, uri, parts=1, table=pa.table({"id": [7] * half + [8] * half}))
    assert native_read(spark, agent, "sales", uri).where("id = 8").count() == half
    victim = parts(Path(uri))[0]
    data = bytearray(victim.read_bytes())
    (first, size), (second, other_size) = column_chunks(bytes(data), agent_ops(agent))
    assert size == other_size
    data[first : first + size] = data[second : second + size]
    victim.write_bytes(bytes(data))
    message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
    assert f"{victim.name} failed authentication" in message


def test_crypto_metadata_changed_after_the_check_is_never_decoded(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """Found in review: once a part was verified, storage switched its plaintext crypto
    metadata to AES_GCM_CTR_V1 (pages not authenticated; key metadata and file AAD kept)
    and re-laid a page as CTR ciphertext of a chosen value, and Spark returned that value.
    Every open is now served the verified footer region, so Parquet keeps AES_GCM_V1: the
    flip alone is never seen, the re-laid page fails authentication, and a fresh JVM
    refuses the file before decoding it."""
    uri = str(tmp_path / "sales")
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    spark.conf.set("spark.sql.parquet.compression.codec", "uncompressed")
    hadoop.set("parquet.enable.dictionary", "false")  # the id page holds the values as written
    try:
        df = spark.range(0, 1000, numPartitions=1).selectExpr("id", "id * 3 AS amount")
        native_write(df, agent, "sales", uri)
    finally:
        spark.conf.unset("spark.sql.parquet.compression.codec")
        hadoop.unset("parquet.enable.dictionary")
    victim = parts(Path(uri))[0]
    original = victim.read_bytes()
    good = sorted(native_read(spark, agent, "sales", uri).collect())  # verified, remembered
    region = len(original) - 8 - int.from_bytes(original[-8:-4], "little")
    assert original[region + 1] == 0x1C  # the union field of AES_GCM_V1
    flipped = bytearray(original)
    flipped[region + 1] = 0x2C  # AES_GCM_CTR_V1
    victim.write_bytes(bytes(flipped))
    assert sorted(native_read(spark, agent, "sales", uri).collect()) == good

    ((chunk, _),) = column_chunks(original, agent_ops(agent))
    page = chunk + 4 + int.from_bytes(original[chunk : chunk + 4], "little")  # after its header
    size = 4 + int.from_bytes(original[page : page + 4], "little")
    ciphertext = original[page + 16 : page + size - 16]  # GCM counts from 2, CTR from 1
    laid = bytearray(16) + ciphertext
    laid[16 + 500 * 8 + 5] ^= 0x01  # + 2**40 to row 500's id, were it decrypted with CTR
    forged = bytearray(flipped)
    forged[page + 16 : page + size] = laid
    assert len(forged) == len(original)
    victim.write_bytes(bytes(forged))
    message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
    assert f"{victim.name} failed authentication" in message
    forget_verified(spark)
    message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
    assert f"{victim.name} was replaced or altered" in message


def test_every_stat_reports_the_manifests_size_not_storages(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """Found in review: Parquet takes a file's length from a stat of its own, and storage
    raced the length (short for that stat, right for the open's check) so that Parquet
    read a footer it had planted. Through the read's file system every stat and listing
    of a manifest's file reports the manifest's size; only the check reads storage's."""
    from jobruntime.native import options
    from jobruntime.native.read import verified_manifest

    uri, root = written(spark, agent, tmp_path)
    manifest = verified_manifest(uri, "sales", agent.key_id("sales"), str(agent.socket))
    jvm = spark.sparkContext._jvm
    conf = jvm.org.apache.hadoop.conf.Configuration(spark.sparkContext._jsc.hadoopConfiguration())
    hadoop_root = options.hadoop_root(uri)
    assert hadoop_root is not None
    for key, value in options.read(manifest, hadoop_root, "sales", str(agent.socket)).items():
        conf.set(key, value)
    victim = parts(root)[0]
    size = victim.stat().st_size
    victim.write_bytes(victim.read_bytes()[:-100])  # storage now holds fewer bytes
    path = jvm.org.apache.hadoop.fs.Path(f"file://{victim}")
    fs = path.getFileSystem(conf)
    assert fs.getClass().getName() == "jobruntime.kms.VerifiedLocalFileSystem"
    assert fs.getFileStatus(path).getLen() == size
    assert fs.getFileLinkStatus(path).getLen() == size
    listed = [s.getLen() for s in fs.listStatus(path.getParent()) if s.getPath().equals(path)]
    assert listed == [size]
    located = fs.listLocatedStatus(path.getParent())
    lengths = []
    while located.hasNext():
        status = located.next()
        if status.getPath().equals(path):
            lengths.append(status.getLen())
    assert lengths == [size]
    forget_verified(spark)
    with pytest.raises(Exception, match="was opened before it was verified"):
        fs.open(path)  # only the crypto factory's check lets a listed file open
    hadoop_file = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(path, conf)
    assert hadoop_file.getLength() == size
    assert fs.rawStatus(path).getLen() == size - 100  # what the check compares


def test_a_part_deleted_after_the_drivers_check_is_missing(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """Found in review: a part deleted between the driver's file-set check and Spark's
    read was reported as undecodable; it is ``dataset.file_missing``, in a fresh JVM and
    once the part was verified."""
    uri, root = written(spark, agent, tmp_path)
    for verified_before in (False, True):
        if verified_before:
            assert native_read(spark, agent, "sales", uri).count() == 2000
        else:
            forget_verified(spark)
        victim = parts(root)[0]
        kept = victim.read_bytes()
        df = native_read(spark, agent, "sales", uri)  # the driver's checks pass here
        victim.unlink()
        with pytest.raises(Exception) as info:  # noqa: PT011 - Spark's, typed below
            df.collect()
        error = typed(info.value)
        assert error is not None, str(info.value)[-2000:]
        assert (error.code, error.message) == (
            "dataset.file_missing",
            f"{root}: file {victim.relative_to(root)} is missing",
        ), verified_before
        victim.write_bytes(kept)


def test_a_part_resized_after_the_drivers_check_is_refused_at_its_open(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """Storage grows or shrinks a part between the driver's file-set check and Spark's
    read: the check in a fresh JVM, and the open of a part already verified, compare
    storage's own size with the manifest's (every stat Spark makes reports the latter)."""
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[0]
    kept = victim.read_bytes()
    for verified_before in (False, True):
        for resized in (kept + b"\0" * 100, kept[:-100]):
            if verified_before:
                assert native_read(spark, agent, "sales", uri).count() == 2000
            else:
                forget_verified(spark)
            df = native_read(spark, agent, "sales", uri)  # the driver's checks pass here
            victim.write_bytes(resized)
            with pytest.raises(Exception) as info:  # noqa: PT011 - Spark's, typed below
                df.collect()
            error = typed(info.value)
            assert error is not None, str(info.value)[-2000:]
            assert error.code == "dataset.file_truncated", (verified_before, error.one_line())
            assert f"is {len(resized)} bytes" in error.message
            victim.write_bytes(kept)


def test_a_page_header_length_prefix_altered_is_refused(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """Found in review: a module's 4-byte length prefix is outside both the footer digest
    and AES-GCM. Raised by 2^24, parquet-java fails to read the header ("Tried to read ...
    bytes"); the read is refused as altered, naming the file."""
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[0]
    data = bytearray(victim.read_bytes())
    ((chunk, _),) = column_chunks(bytes(data), agent_ops(agent))[:1]
    data[chunk + 3] ^= 0x01  # the first page header's length, + 2**24
    victim.write_bytes(bytes(data))
    message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
    assert f"{victim.name} could not be decoded" in message


def test_a_schema_1_dataset_is_read_on_both_paths_and_checked_whole(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """A version published before footer digests (each file's whole SHA-256) is still
    read by both paths, and a page altered in it is refused before it is decoded."""
    uri = str(tmp_path / "sales")
    write_version(agent, uri, parts=2)
    old = republish_as_schema_1(agent, uri)
    assert old.schema_version == 1
    assert native_read(spark, agent, "sales", uri).count() == 600
    assert agent.reader(spark, "sales", uri).count() == 600
    victim = parts(Path(uri), old.version)[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    # As a fresh JVM: this one remembers the file it verified (and pins its key metadata,
    # so the altered page would fail authentication instead: the case tested above).
    forget_verified(spark)
    message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
    assert f"{victim.name} was replaced or altered" in message
    with pytest.raises(Exception, match=f"FileCorruptError.*{victim.name} was replaced"):
        agent.reader(spark, "sales", uri).collect()


def test_a_part_rolled_back_to_the_previous_version_is_refused(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    uri, root = two_equal_versions(spark, agent, tmp_path)
    parts(root, 2)[0].write_bytes(parts(root, 1)[0].read_bytes())  # same size, same key
    refused_natively(spark, agent, uri, "dataset.file_corrupt")


def test_parts_moved_within_a_version_are_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, root = two_equal_versions(spark, agent, tmp_path)
    first, second = parts(root, 2)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    refused_natively(spark, agent, uri, "dataset.file_corrupt")


def test_a_part_swapped_after_it_was_verified_is_refused(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """The JVM remembers a verified file by path and digest and does not check it again;
    every open of it is served the verified footer region, so a file swapped in after the
    check (a time-of-check to time-of-use swap) is decoded under the verified file's key
    and AAD, and its first page fails authentication."""
    uri, root = two_equal_versions(spark, agent, tmp_path)
    assert native_read(spark, agent, "sales", uri).count() == 4000  # verified, and remembered
    parts(root, 2)[1].write_bytes(parts(root, 1)[1].read_bytes())
    message = refused_natively(spark, agent, uri, "dataset.file_corrupt")
    assert "part-00001.parquet failed authentication" in message


def test_a_part_of_another_dataset_under_the_same_size_is_refused(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    uri, root = two_equal_versions(spark, agent, tmp_path)
    other = str(tmp_path / "other")
    native_write(
        spark.range(0, 4000, numPartitions=2).selectExpr("id % 2000 AS id", "id % 10 AS bucket"),
        agent,
        "other",
        other,
    )
    foreign = parts(Path(other))[0]
    assert foreign.stat().st_size == parts(root, 2)[0].stat().st_size  # key ids of one length
    parts(root, 2)[0].write_bytes(foreign.read_bytes())
    refused_natively(spark, agent, uri, "dataset.file_corrupt")


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        ("truncate", "dataset.file_truncated"),
        ("drop", "dataset.file_missing"),
        ("add", "dataset.file_extra"),
        ("replay_manifest", "dataset.rollback"),
        ("hide_manifest", "dataset.manifest_missing"),
        ("alter_manifest", "dataset.manifest_invalid"),
    ],
)
def test_the_drivers_checks_refuse_before_spark_reads(
    spark: Any, agent: Agent, tmp_path: Path, attack: str, code: str
) -> None:
    uri, root = two_equal_versions(spark, agent, tmp_path)
    victim = parts(root, 2)[-1]
    if attack == "truncate":
        victim.write_bytes(victim.read_bytes()[:-100])
    elif attack == "drop":
        victim.unlink()
    elif attack == "add":
        victim.with_name("part-00099.parquet").write_bytes(victim.read_bytes())
    elif attack == "replay_manifest":
        (root / manifest_path(2)).write_bytes((root / manifest_path(1)).read_bytes())
    elif attack == "hide_manifest":
        (root / manifest_path(2)).unlink()
    else:
        path = root / manifest_path(2)
        manifest = Manifest.model_validate_json(path.read_bytes())
        path.write_text(manifest.model_copy(update={"rows": 1}).model_dump_json())
    refused_natively(spark, agent, uri, code)


def test_wrong_key_is_refused(spark: Any, agent: Agent, tmp_path: Path) -> None:
    uri, _ = written(spark, agent, tmp_path)
    refused_natively(spark, agent, uri, "dataset.wrong_key", dataset="other")


def test_spark_skipping_corrupt_files_does_not_skip_a_refused_one(
    spark: Any, agent: Agent, tmp_path: Path
) -> None:
    """``spark.sql.files.ignoreCorruptFiles`` would turn a refusal into missing rows."""
    uri, root = written(spark, agent, tmp_path)
    victim = parts(root)[0]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))
    spark.conf.set("spark.sql.files.ignoreCorruptFiles", "true")
    spark.conf.set("spark.sql.files.ignoreMissingFiles", "true")
    try:
        refused_natively(spark, agent, uri, "dataset.file_corrupt")
    finally:
        spark.conf.unset("spark.sql.files.ignoreCorruptFiles")
        spark.conf.unset("spark.sql.files.ignoreMissingFiles")


def test_a_failed_write_leaves_no_new_version(spark: Any, agent: Agent, tmp_path: Path) -> None:
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
        native_write(bad, agent, "sales", uri)
    assert local_versions(open_storage(uri)) == [1]
    assert not [p for p in (root / "_staging").rglob("*") if p.is_file()]
    assert native_read(spark, agent, "sales", uri).count() == 2000
