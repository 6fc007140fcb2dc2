"""Sales summary: totals per group, above a minimum amount.

A plain group-by aggregation whose grouping column and threshold are parameters,
validated by ``Params`` before any data is read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

LOG_FIELDS = ("group_by",)  # what ctx.log may show besides counts: a parameter, never data


class Params(BaseModel):
    group_by: Literal["region", "product", "channel"] = "region"
    min_amount: float = Field(default=0.0, ge=0)


def run(ctx: Any) -> None:
    from pyspark.sql import functions as F

    params: Params = ctx.params
    sales = ctx.read("sales").where(F.col("amount") >= params.min_amount)
    summary = (
        sales.groupBy(params.group_by)
        .agg(
            F.count("*").alias("orders"),
            F.round(F.sum("amount"), 2).alias("revenue"),
            F.round(F.avg("amount"), 2).alias("average"),
        )
        .orderBy(params.group_by)
    )
    ctx.log.info("summarised", group_by=params.group_by)
    ctx.write(summary, "summary")
