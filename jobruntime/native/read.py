"""``ctx.read`` on Spark's native Parquet reader, with the Python reader's checks.

On the driver, before anything is read: the latest manifest is opened exactly as the
Python data source opens it (:func:`jobruntime.dataset.versions.open_latest`: key check
and MAC through the key agent, the control plane's recorded version, the version's
exact file set and sizes). Spark is then given exactly the manifest's files, by explicit
path (never a directory), the manifest's schema (no footer is read to infer one), and
each file's size and footer digest, which the JVM crypto factory checks on the
executor before the file is decoded (``java/jobruntime-kms``, ``ConfidentialCryptoFactory``).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql.pandas.types import from_arrow_schema

from jobruntime.dataset import versions
from jobruntime.dataset.errors import ManifestMissingError
from jobruntime.dataset.manifest import Manifest
from jobruntime.datasource.options import Options
from jobruntime.errors import ConfigError
from jobruntime.native import options


def verified_manifest(uri: str, dataset: str, key_id: str, socket: str) -> Manifest:
    """The latest version's manifest, checked as the Python data source checks it."""
    o = Options(uri=uri, dataset=dataset, key_id=key_id, socket=socket)
    manifest = versions.open_latest(o.storage(), uri, o.ops(key_id), o.registry())
    if manifest is None:
        raise ManifestMissingError(f"{uri}: no version has been written")
    return manifest


def read(spark: Any, *, uri: str, dataset: str, key_id: str, socket: str) -> Any:
    """A DataFrame over exactly the files of the latest verified version."""
    root = options.hadoop_root(uri)
    if root is None:
        raise ConfigError(f"{uri}: the native Parquet path reads local datasets only")
    manifest = verified_manifest(uri, dataset, key_id, socket)
    schema = from_arrow_schema(manifest.schema)
    if not manifest.files:
        return spark.createDataFrame([], schema)
    paths = [f"{root}/{entry.path}" for entry in manifest.files]
    return (
        spark.read.format("parquet")
        .schema(schema)
        .options(**options.read(manifest, root, dataset, socket))
        .load(paths)
    )
