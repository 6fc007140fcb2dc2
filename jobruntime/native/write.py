"""``ctx.write`` on Spark's native Parquet writer, with the Python writer's commit.

1. Spark writes the DataFrame into the dataset's staging area (``_staging/<write id>/``),
   one part per task (``maxRecordsPerFile=0``), each a uniform AES_GCM_V1 PME file with an
   encrypted footer whose KEK the key agent wraps (``ConfidentialCryptoFactory``).
2. Each task measures its parts before it commits (size, footer digest, rows, row
   groups) and sends them to the driver in its commit message; Spark lets one attempt per
   partition commit, so a retried or speculative task's extra files are never reported
   (``ConfidentialCommitProtocol``, ``StagedParts``).
3. The commit is the Python writer's own (:func:`jobruntime.dataset.versions.commit`):
   one part per partition, every part in staging checked against its task's digest,
   moved into a new version directory, the manifest sealed by the agent and published
   with one create-if-absent, the version recorded with the control plane.
4. The staging area is removed whatever happened (an abort included).
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql.pandas.types import to_arrow_schema

from jobruntime.dataset import files, versions
from jobruntime.dataset.errors import DatasetError, WriteError
from jobruntime.dataset.manifest import Manifest
from jobruntime.datasource.options import Options
from jobruntime.errors import ConfigError
from jobruntime.keyagent.errors import KeyAgentError
from jobruntime.native import jvm, options


def write(df: Any, *, uri: str, dataset: str, key_id: str, socket: str) -> Manifest:
    """Publish ``df`` as the dataset's next version; nothing is visible unless it all commits."""
    root = options.hadoop_root(uri)
    if root is None:
        raise ConfigError(f"{uri}: the native Parquet path writes local datasets only")
    spark = df.sparkSession
    o = Options(uri=uri, dataset=dataset, key_id=key_id, socket=socket)
    storage = o.storage()
    # Spark sends timestamps as UTC instants; the manifest describes them so (as the Python writer).
    schema = to_arrow_schema(df.schema, timezone="UTC")
    write_id = versions.new_write_id()
    staging = f"{versions.STAGING}/{write_id}"
    try:
        with jvm.session_settings(spark, jvm.WRITE_SETTINGS):
            (
                df.write.format("parquet")
                .options(**options.write(dataset, key_id, socket, uri, write_id))
                .mode("errorifexists")
                .save(f"{root}/{staging}")
            )
        staged = _staged(jvm.staged_parts(spark, write_id), staging, uri)
        try:
            return versions.commit(storage, uri, o.ops(key_id), schema, staged, o.registry())
        except (DatasetError, KeyAgentError):  # typed: keep the code (a refusal, say)
            raise
        except Exception as exc:
            raise WriteError(f"{uri}: commit failed ({type(exc).__name__})") from None
    finally:
        versions.abort(storage, write_id)


def _staged(reported: str | None, staging: str, uri: str) -> list[tuple[int, files.WrittenFile]]:
    """The parts the tasks reported: exactly one per partition."""
    if reported is None:
        raise WriteError(
            f"{uri}: the write's tasks reported no parts (is the commit protocol set?)"
        )
    parts = json.loads(reported)
    staged: list[tuple[int, files.WrittenFile]] = []
    partitions: set[int] = set()
    for p in parts:
        partition = int(p["partition"])
        if partition in partitions:
            raise WriteError(f"{uri}: partition {partition} reported more than one part")
        partitions.add(partition)
        written = files.WrittenFile(
            path=f"{staging}/{p['name']}",
            size=int(p["size"]),
            footer_sha256=str(p["footer_sha256"]),
            rows=int(p["rows"]),
            row_groups=int(p["row_groups"]),
        )
        staged.append((partition, written))
    return staged
