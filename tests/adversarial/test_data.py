"""Storage lies about a dataset: the Python read path (the ``confidential`` data source's own
reader, driven without Spark) refuses with the exact code.

Versions are written by the calls the data source's writer makes (stage each part,
``versions.commit``: tests/dataset/parts.py), with a real key agent holding the keys and
recording versions as the control plane would. A replaced part is refused before it is
decoded; an altered module of a genuine part fails PME's authentication when it is decoded,
which fails the read (Spark fails the query as a whole). Spark's native path is attacked in
tests/dataset/test_native_tamper.py (pointer rows).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from jobruntime.dataset import files, versions
from jobruntime.dataset.manifest import Manifest
from jobruntime.datasource.source import ConfidentialDataSource
from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.client import KeyAgentClient
from tests.dataset.conftest import SENTINEL, Agent, AgentFactory, key_id
from tests.dataset.parts import ROWS, agent_ops, column_chunks, write_version

__all__ = ["ROWS", "part_files", "read", "refused", "write_version"]


def read(agent: Agent, uri: str, dataset: str = "sales") -> int:
    """Rows the data source's reader returns, partition by partition, as Spark asks."""
    options = {"path": uri, "dataset": dataset, "keyId": key_id(dataset)}
    source = ConfidentialDataSource({**options, "keyAgentSocket": str(agent.socket)})
    reader = source.reader(None)  # type: ignore[arg-type]  # the schema is the manifest's
    rows = 0
    for partition in reader.partitions():
        batches = list(reader.read(partition))  # a refused part raises before any batch
        rows += sum(b.num_rows for b in batches)
    return rows


def refused(agent: Agent, uri: str, code: str, dataset: str = "sales") -> str:
    with pytest.raises(JobRuntimeError) as info:
        read(agent, uri, dataset)
    assert info.value.code == code, info.value.one_line()
    assert SENTINEL not in info.value.message
    return info.value.message


def part_files(uri: str, version: int = 1) -> list[Path]:
    return sorted(Path(uri).glob(f"v{version:06d}-*/part-*.parquet"))


def manifest_file(uri: str, version: int) -> Path:
    return Path(uri) / versions.manifest_path(version)


@pytest.fixture
def dataset(agents: AgentFactory, tmp_path: Path) -> tuple[Agent, str]:
    """An agent and one intact version of the ``sales`` dataset, read back whole once."""
    agent = agents()
    uri = str(tmp_path / "sales")
    write_version(agent, uri)
    assert read(agent, uri) == 3 * ROWS
    assert len({p.stat().st_size for p in part_files(uri)}) == 1
    return agent, uri


@pytest.mark.attack(
    id="data-bit-flip",
    threat="one bit of a stored part flipped (in a page)",
    adversary="storage account",
    mechanism="the page is an AES-GCM module authenticated under the data key and file AAD "
    "that the part's footer pins (its digest is in the authenticated manifest)",
)
def test_a_flipped_bit_in_a_part_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    victim = part_files(uri)[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    assert victim.name in refused(agent, uri, "dataset.file_corrupt")


@pytest.mark.attack(
    id="data-byte-altered-anywhere",
    threat="one byte of a part altered anywhere: its leading magic, its first module, a "
    "page, the crypto metadata, the encrypted footer, the footer length, the final magic",
    adversary="storage account",
    mechanism="the size and footer digest (first 4 bytes and footer region) are in the "
    "authenticated manifest and checked before decoding; every other byte is inside an "
    "AES-GCM module under the data key and file AAD the footer pins",
)
def test_a_byte_altered_anywhere_in_a_part_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    victim = part_files(uri)[1]
    original = victim.read_bytes()
    region = len(original) - 8 - int.from_bytes(original[-8:-4], "little")
    where = {
        "leading magic": 0,
        "first module": 4,
        "a page": len(original) // 3,
        "crypto metadata": region,
        "encrypted footer": (region + len(original)) // 2,
        "footer length": len(original) - 8,
        "final magic": len(original) - 1,
    }
    for name, position in where.items():
        altered = bytearray(original)
        altered[position] ^= 0x01
        victim.write_bytes(bytes(altered))
        assert victim.name in refused(agent, uri, "dataset.file_corrupt"), name
    victim.write_bytes(original)
    assert read(agent, uri) == 3 * ROWS


@pytest.mark.attack(
    id="data-row-group-replayed",
    threat="a row group's genuine ciphertext copied over another row group of the same part "
    "(same size, same key: 8s read where 7s were written)",
    adversary="storage account",
    mechanism="PME's module AAD names the file, the row group, the column and the page: "
    "a module decodes in its own place only",
)
def test_a_row_group_copied_over_another_in_its_part_is_refused(
    agents: AgentFactory, tmp_path: Path
) -> None:
    agent = agents()
    uri = str(tmp_path / "sales")
    half = files.ROW_GROUP_ROWS
    write_version(agent, uri, parts=1, table=pa.table({"id": [7] * half + [8] * half}))
    victim = part_files(uri)[0]
    data = bytearray(victim.read_bytes())
    (first, size), (second, other_size) = column_chunks(bytes(data), agent_ops(agent))
    assert size == other_size
    data[first : first + size] = data[second : second + size]
    victim.write_bytes(bytes(data))
    assert victim.name in refused(agent, uri, "dataset.file_corrupt")


@pytest.mark.attack(
    id="data-part-dropped",
    threat="a part deleted from the version (rows silently missing from the result)",
    adversary="storage account",
    mechanism="the version's file set must equal the manifest's list",
)
def test_a_dropped_part_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    victim = part_files(uri)[-1]
    victim.unlink()
    assert victim.name in refused(agent, uri, "dataset.file_missing")


@pytest.mark.attack(
    id="data-part-duplicated",
    threat="a part copied under a new name in the version (rows counted twice)",
    adversary="storage account",
    mechanism="the version's file set must equal the manifest's list",
)
def test_a_duplicated_part_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    first = part_files(uri)[0]
    extra = first.with_name("part-00009.parquet")
    shutil.copyfile(first, extra)
    assert extra.name in refused(agent, uri, "dataset.file_extra")


@pytest.mark.attack(
    id="data-parts-reordered",
    threat="two parts of a version swapped (same sizes, same key, both genuine)",
    adversary="storage account",
    mechanism="each part's footer digest is listed under its own path in the manifest",
)
def test_parts_swapped_within_a_version_are_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    a, b = part_files(uri)[:2]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    assert a.name in refused(agent, uri, "dataset.file_corrupt")


@pytest.mark.attack(
    id="data-part-from-another-dataset",
    threat="a part of another dataset (same size) put in place of one of this dataset's",
    adversary="storage account",
    mechanism="part footer digests in this dataset's manifest, which is MACed under this "
    "dataset's key",
)
def test_a_part_of_another_dataset_is_refused(dataset: tuple[Agent, str], tmp_path: Path) -> None:
    agent, uri = dataset
    other = str(tmp_path / "other")
    write_version(agent, other, dataset="other")
    victim, donor = part_files(uri)[0], part_files(other)[0]
    assert victim.stat().st_size == donor.stat().st_size
    shutil.copyfile(donor, victim)
    assert victim.name in refused(agent, uri, "dataset.file_corrupt")


@pytest.mark.attack(
    id="data-part-rolled-back",
    threat="a part of the latest version replaced by the same part of an older version",
    adversary="storage account",
    mechanism="the latest manifest lists the latest parts' digests",
)
def test_a_part_rolled_back_to_an_older_version_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    write_version(agent, uri)
    old, new = part_files(uri, 1)[0], part_files(uri, 2)[0]
    assert old.stat().st_size == new.stat().st_size
    shutil.copyfile(old, new)
    assert new.name in refused(agent, uri, "dataset.file_corrupt")


@pytest.mark.attack(
    id="manifest-altered",
    threat="the manifest edited (a row count, a digest, a file list)",
    adversary="storage account",
    mechanism="the manifest's MAC under a key derived from the dataset key, checked in the "
    "key agent",
)
def test_an_altered_manifest_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    path = manifest_file(uri, 1)
    manifest = Manifest.model_validate_json(path.read_bytes())
    path.write_text(manifest.model_copy(update={"rows": manifest.rows - 1}).model_dump_json())
    refused(agent, uri, "dataset.manifest_invalid")


@pytest.mark.attack(
    id="manifest-rolled-back",
    threat="the latest manifest replaced by an older genuine one (an older version served "
    "as the latest)",
    adversary="storage account",
    mechanism="the control plane records each dataset's latest version and manifest digest",
)
def test_an_older_manifest_served_as_the_latest_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    write_version(agent, uri)
    manifest_file(uri, 2).write_bytes(manifest_file(uri, 1).read_bytes())
    refused(agent, uri, "dataset.rollback")


@pytest.mark.attack(
    id="manifest-dropped",
    threat="the latest manifest deleted, so the previous version looks like the latest",
    adversary="storage account",
    mechanism="readers open the version the control plane recorded, not the newest present",
)
def test_a_deleted_latest_manifest_is_refused(dataset: tuple[Agent, str]) -> None:
    agent, uri = dataset
    write_version(agent, uri)
    manifest_file(uri, 2).unlink()
    refused(agent, uri, "dataset.manifest_missing")


@pytest.mark.attack(
    id="manifest-from-another-dataset",
    threat="another dataset's genuine manifest (and parts) put in this dataset's place",
    adversary="storage account",
    mechanism="a manifest names its key id and key check; it must be this dataset's key, "
    "pinned by the spec",
)
def test_another_datasets_manifest_is_refused(dataset: tuple[Agent, str], tmp_path: Path) -> None:
    agent, uri = dataset
    other = str(tmp_path / "other")
    write_version(agent, other, dataset="other")
    shutil.rmtree(uri)
    shutil.copytree(other, uri)
    refused(agent, uri, "dataset.wrong_key")


@pytest.mark.attack(
    id="manifest-duplicated-ahead",
    threat="a copy of the latest manifest planted as the next version, to make the next "
    "publish fail or to be read in place of the recorded one",
    adversary="storage account",
    mechanism="readers open the recorded version only; a publish creates its manifest "
    "if absent, so a planted one makes the write fail whole and leaves no new version",
)
def test_a_planted_next_manifest_is_ignored_by_readers_and_stops_the_write(
    dataset: tuple[Agent, str],
) -> None:
    agent, uri = dataset
    manifest_file(uri, 2).write_bytes(manifest_file(uri, 1).read_bytes())
    assert read(agent, uri) == 3 * ROWS  # still version 1, as recorded
    with pytest.raises(JobRuntimeError) as info:
        write_version(agent, uri)
    assert info.value.code == "dataset.version_conflict"
    latest = KeyAgentClient(agent.socket).latest_version("sales")
    assert latest is not None and latest[0] == 1
    assert part_files(uri, 2) == []  # the failed write's parts are gone
    assert not list((Path(uri) / versions.STAGING).rglob("*.parquet"))
