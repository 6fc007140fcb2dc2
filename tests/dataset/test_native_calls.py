"""Key-agent calls do not grow with the number of files: a writing JVM wraps one KEK per
dataset, a reading JVM unwraps each KEK once, and a Python worker writing with pyarrow
reuses its KEK across the files it writes (so native reads of its files unwrap once per
worker, not per file)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dataset.conftest import Agent, Relay
from tests.dataset.native import native_read, native_write

KEY_MATERIAL = re.compile(rb'\{[^{}]*"keyMaterialType"[^{}]*\}')


@pytest.fixture
def relay(agent: Agent) -> Iterator[Relay]:
    r = Relay(agent.socket)
    yield r
    r.close()


def ops(relay: Relay) -> Counter[str]:
    return Counter(json.loads(line)["op"] for line in bytes(relay.requests).splitlines())


def cold(spark: Any) -> None:
    """Forget verified files and Parquet's cached KEKs and KMS clients, as a fresh JVM."""
    jvm = spark.sparkContext._jvm
    jvm.jobruntime.kms.ConfidentialCryptoFactory.forgetVerified()
    jvm.org.apache.parquet.crypto.keytools.KeyToolkit.removeCacheEntriesForAllTokens()


def kek_ids(uri: str) -> set[str]:
    found = set()
    for part in Path(uri).glob("v*/part-*.parquet"):
        material = KEY_MATERIAL.search(part.read_bytes())
        assert material is not None
        found.add(json.loads(material.group(0))["keyEncryptionKeyID"])
    return found


def test_native_calls_are_the_same_for_2_and_16_files(
    spark: Any, agent: Agent, relay: Relay, tmp_path: Path
) -> None:
    spied = Agent(relay.path, agent.keys)
    counts = []
    for files, name in ((2, "sales"), (16, "other")):
        uri = str(tmp_path / name)
        cold(spark)
        start = ops(relay)
        native_write(spark.range(0, 20_000, numPartitions=files), spied, name, uri)
        written = ops(relay)
        cold(spark)
        assert native_read(spark, spied, name, uri).count() == 20_000
        read = ops(relay)
        assert len(kek_ids(uri)) == 1  # one KEK for every file of the write
        counts.append((written - start, read - written))
    assert counts[0] == counts[1], counts
    write, read = counts[0]
    assert write["wrap"] == 1 and read["unwrap"] == 1, counts


def test_python_written_files_share_their_workers_kek(
    spark: Any, agent: Agent, relay: Relay, tmp_path: Path
) -> None:
    spied = Agent(relay.path, agent.keys)
    uri = str(tmp_path / "sales")
    start = ops(relay)
    spied.write(spark.range(0, 20_000, numPartitions=8), "sales", uri)
    wraps = (ops(relay) - start)["wrap"]
    keks = kek_ids(uri)
    assert len(keks) == wraps <= 2 < 8  # one per Python worker of local[2], not one per file
    cold(spark)
    before = ops(relay)
    assert native_read(spark, spied, "sales", uri).count() == 20_000
    assert (ops(relay) - before)["unwrap"] == len(keks)
