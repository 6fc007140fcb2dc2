"""The confidential Spark data source: ``spark.read.format("confidential")``.

Register it once per session with :func:`register`.
"""

from __future__ import annotations

from typing import Any


def register(spark: Any) -> None:
    from jobruntime.datasource.source import ConfidentialDataSource

    spark.dataSource.register(ConfidentialDataSource)
