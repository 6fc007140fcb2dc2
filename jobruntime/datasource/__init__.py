"""The confidential Spark data source: ``spark.read.format("confidential")``.

Register it once per session with :func:`register`.
"""

from __future__ import annotations

from typing import Any


def register(spark: Any) -> None:
    from jobruntime.datasource.source import ConfidentialDataSource

    # Spark refuses a reader with pushFilters() unless this is on.
    spark.conf.set("spark.sql.python.filterPushdown.enabled", "true")
    spark.dataSource.register(ConfidentialDataSource)
