"""Price bands: how many products fall in each price band, and each band's median price.

Both functions Spark runs on its workers are defined at module level, as data
scientists write them: ``band_of`` is a plain Python UDF (one value at a time) and
``median_price`` a pandas UDF (a grouped aggregate over a whole band). The runtime
pickles the job module by value, so workers never need to import it.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field, field_validator

LOG_FIELDS = ("bands",)  # what ctx.log may show besides counts: a parameter, never data


class Params(BaseModel):
    edges: list[float] = Field(default=[10.0, 50.0, 100.0], min_length=1, max_length=20)

    @field_validator("edges")
    @classmethod
    def _ascending(cls, edges: list[float]) -> list[float]:
        if any(lo >= hi for lo, hi in itertools.pairwise(edges)):
            raise ValueError("edges must be strictly ascending")
        return edges


def band_of(price: float | None, edges: list[float]) -> int | None:
    """Band 0 is below ``edges[0]``; band ``i`` is ``edges[i-1] <= price < edges[i]``."""
    if price is None:
        return None
    return bisect.bisect_right(edges, price)


def median_price(prices: pd.Series) -> float:
    """The median of one band's prices, by pandas: any per-group pandas code fits here."""
    return float(prices.median())


def run(ctx: Any) -> None:
    from pyspark.sql import functions as F

    params: Params = ctx.params
    edges = list(params.edges)  # a plain list: the UDF's closure carries it to the workers
    band = F.udf(lambda price: band_of(price, edges), "int")
    median = F.pandas_udf(median_price, "double")

    price = F.col("price").cast("double")
    banded = ctx.read("products").where(price.isNotNull()).withColumn("band", band(price))
    # Spark runs a pandas aggregate apart from its own ones: two group-bys, one join.
    counts = banded.groupBy("band").agg(F.count("*").alias("products"))
    medians = banded.groupBy("band").agg(median(price).alias("median_price"))
    bands = counts.join(medians, "band").orderBy("band")
    ctx.log.info("banded", bands=len(edges) + 1)
    ctx.write(bands, "bands")
