"""Redaction: a copy of a table with the columns the spec marks as PII replaced.

``hash`` replaces a value with a keyed SHA-256 (joinable, not readable); ``mask``
replaces it with a fixed token; ``drop`` removes the column.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

LOG_FIELDS = ("method",)  # what ctx.log may show besides counts: a parameter, never data


class Params(BaseModel):
    pii_columns: list[str] = Field(min_length=1)
    method: Literal["hash", "mask", "drop"] = "hash"
    hash_key: str = Field(default="redaction", min_length=8)


def run(ctx: Any) -> None:
    from pyspark.sql import functions as F

    params: Params = ctx.params
    records = ctx.read("records")
    missing = sorted(set(params.pii_columns) - set(records.columns))
    if missing:
        raise ValueError(f"columns not in the input: {', '.join(missing)}")
    for column in params.pii_columns:
        if params.method == "drop":
            records = records.drop(column)
        elif params.method == "mask":
            records = records.withColumn(column, F.lit("***"))
        else:
            value = F.concat(F.lit(params.hash_key), F.col(column).cast("string"))
            records = records.withColumn(column, F.sha2(value, 256))
    ctx.log.info("redacted", columns=len(params.pii_columns), method=params.method)
    ctx.write(records, "redacted")
