"""No key material leaves the native path: not the master keys (or the keys derived from
them), not the KEKs the key agent wraps and unwraps, not the files' data keys. The
sentinels are the real keys of a real write and read, recovered on the side (the KEKs from
the agent's socket through a relay, the data keys by unwrapping each file's footer key
metadata with them), then looked for, in every spelling, in the session's and the query's
Hadoop configuration, the query plans, every ``explain()`` mode, everything Spark's JVM
logged at DEBUG meanwhile (what an event log would show of a query is its plan, covered
here; the runtime's configuration keeps the event log off), the Python log and every
file the write left."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobruntime.dataset.manifest import Manifest
from jobruntime.dataset.versions import manifest_path
from jobruntime.native import options
from tests.dataset.conftest import SENTINEL, Agent, Relay, sales_table
from tests.dataset.native import native_read, native_write
from tests.dataset.test_agent_boundary import derived
from tests.tamper import spellings

EXPLAIN_MODES = ("simple", "extended", "codegen", "cost", "formatted")
KEY_MATERIAL = re.compile(rb'\{[^{}]*"keyMaterialType"[^{}]*\}')  # PME's key material JSON


@pytest.fixture
def relay(agent: Agent) -> Iterator[Relay]:
    r = Relay(agent.socket)
    yield r
    r.close()


class JvmLog:
    """Every log event of Spark's JVM at DEBUG and above, into memory, while in use."""

    def __init__(self, spark: Any) -> None:
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        self._ctx = jvm.org.apache.logging.log4j.LogManager.getContext(False)
        self._config = self._ctx.getConfiguration()
        self._writer = jvm.java.io.StringWriter()
        layout = jvm.org.apache.logging.log4j.core.layout.PatternLayout.createDefaultLayout()
        self._appender = jvm.org.apache.logging.log4j.core.appender.WriterAppender.createAppender(
            layout, None, self._writer, "no-key-sentinel", False, True
        )

    def __enter__(self) -> JvmLog:
        level = self._jvm.org.apache.logging.log4j.Level
        root = self._config.getRootLogger()
        self._level = root.getLevel()
        self._console = list(root.getAppenders().keySet())
        self._appender.start()
        self._config.addAppender(self._appender)
        for name in self._console:  # not onto the terminal: into memory only
            root.removeAppender(name)
        root.addAppender(self._appender, level.ALL, None)
        root.setLevel(level.DEBUG)
        self._ctx.updateLoggers()
        return self

    def __exit__(self, *exc: object) -> None:
        root = self._config.getRootLogger()
        root.removeAppender("no-key-sentinel")
        for name in self._console:
            root.addAppender(self._config.getAppender(name), None, None)
        root.setLevel(self._level)
        self._ctx.updateLoggers()
        self._appender.stop()

    @property
    def text(self) -> str:
        return str(self._writer.toString())


def hadoop_conf_text(conf: Any) -> str:
    it = conf.iterator()
    lines = []
    while it.hasNext():
        entry = it.next()
        lines.append(f"{entry.getKey()}={entry.getValue()}")
    return "\n".join(lines)


def test_no_key_material_in_conf_plans_explain_logs_or_files(
    spark: Any,
    agent: Agent,
    relay: Relay,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobruntime")
    spied = Agent(relay.path, agent.keys)  # the JVM's and the driver's agent calls, seen
    uri = str(tmp_path / "sales")
    df = spark.createDataFrame(sales_table(3000).to_pandas()).repartition(3)
    with JvmLog(spark) as log:
        native_write(df, spied, "sales", uri)
        back = native_read(spark, spied, "sales", uri).where("id = 7")
        assert back.collect()[0]["secret"] == SENTINEL  # it is there, in the rows only
        plans = [
            str(back._jdf.queryExecution().toString()),
            str(back._jdf.queryExecution().executedPlan().toString()),
        ]
        capsys.readouterr()
        for mode in EXPLAIN_MODES:
            back.explain(mode=mode)
        explained = capsys.readouterr().out
    assert "FileScan parquet" in explained
    # The query's own Hadoop configuration (Spark builds it from the read's options).
    manifest = Manifest.model_validate_json((Path(uri) / manifest_path(1)).read_bytes())
    read_options = options.read(manifest, options.hadoop_root(uri) or "", "sales", str(relay.path))
    query_conf = spark._jsparkSession.sessionState().newHadoopConfWithOptions(
        spark.sparkContext._jvm.PythonUtils.toScalaMap(read_options)
    )
    haystacks = {
        "session hadoop conf": hadoop_conf_text(spark._jsc.hadoopConfiguration()),
        "query hadoop conf": hadoop_conf_text(query_conf),
        "plans": "\n".join(plans),
        "explain": explained,
        "spark log": log.text,
        "python log": caplog.text,
    }
    files = {str(p): p.read_bytes() for p in Path(uri).rglob("*") if p.is_file()}

    # The sentinels: every key the run used.
    wire = [json.loads(line) for line in bytes(relay.requests + relay.answers).splitlines()]
    keks = [base64.b64decode(m["key"]) for m in wire if "key" in m]
    assert keks, "no KEK crossed the socket"
    deks = []
    for data in files.values():
        for found in KEY_MATERIAL.findall(data):
            material = json.loads(found)
            raw = base64.b64decode(material["wrappedDEK"])
            aad = base64.b64decode(material["keyEncryptionKeyID"])
            for kek in keks:
                try:
                    deks.append(AESGCM(kek).decrypt(raw[:12], raw[12:], aad))
                    break
                except Exception:  # noqa: S112 - another file's KEK
                    continue
    assert len(deks) == len(manifest.files), "every file's data key recovered"
    secrets = [*keks, *deks]
    for dataset, key in agent.keys.items():
        secrets += [key, *derived(dataset, key)]

    assert log.text.count("\n") > 100  # the JVM did log, at DEBUG
    for secret in secrets:
        for form in spellings(secret):
            for where, text in haystacks.items():
                assert form not in text.encode("utf-8", "surrogateescape"), where
            for path, data in files.items():
                assert form not in data, path
    for where in ("plans", "explain", "query hadoop conf", "session hadoop conf"):
        assert SENTINEL not in haystacks[where], where
    for path, data in files.items():
        assert SENTINEL.encode() not in data, path
