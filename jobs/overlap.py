"""Two-party clean-room overlap: how many customers two organisations share, per segment.

Each party's customer table is joined on a keyed hash of the normalised email
address (the key is a run parameter, so raw emails never meet), and only counts
per segment leave the job; segments smaller than ``k`` are suppressed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Params(BaseModel):
    k: int = Field(default=10, ge=2, description="minimum group size to report")
    hash_key: str = Field(default="clean-room", min_length=8, description="HMAC key for emails")


def run(ctx: Any) -> None:
    from pyspark.sql import functions as F

    params: Params = ctx.params

    def keyed(df: Any) -> Any:
        email = F.lower(F.trim(F.col("email")))
        return df.withColumn("match_key", F.sha2(F.concat(F.lit(params.hash_key), email), 256))

    a = keyed(ctx.read("customers_a")).select("match_key", "segment")
    b = keyed(ctx.read("customers_b")).select("match_key")
    overlap = (
        a.join(b.dropDuplicates(["match_key"]), "match_key")
        .groupBy("segment")
        .agg(F.count("*").alias("customers"))
        .where(F.col("customers") >= params.k)
        .orderBy("segment")
    )
    ctx.write(overlap, "overlap")
