"""``jobs/sales_summary.py``: orders, revenue and average per group, above a minimum."""

from __future__ import annotations

from typing import Any

import pytest

import jobs.sales_summary
from jobruntime.job.errors import ParamsError, UnknownParamError
from jobruntime.testing import LocalContext, Logged

SALES = [
    ("north", "tea", "web", 10.0),
    ("north", "tea", "shop", 20.5),
    ("north", "cake", "web", 2.0),
    ("south", "cake", "web", 7.25),
    ("south", "tea", "shop", 30.0),
]
SCHEMA = "region string, product string, channel string, amount double"


def run(spark: Any, **params: Any) -> LocalContext:
    ctx = LocalContext(
        spark,
        module=jobs.sales_summary,
        inputs={"sales": spark.createDataFrame(SALES, SCHEMA)},
        outputs=["summary"],
        params=params,
    )
    jobs.sales_summary.run(ctx)
    return ctx


def test_totals_per_region_by_default(spark: Any) -> None:
    ctx = run(spark)
    assert ctx.rows("summary") == [
        {"region": "north", "orders": 3, "revenue": 32.5, "average": 10.83},
        {"region": "south", "orders": 2, "revenue": 37.25, "average": 18.63},
    ]
    assert ctx.logged[0] == Logged("INFO", "summarised", {"group_by": "region"})


def test_group_by_and_minimum_amount(spark: Any) -> None:
    ctx = run(spark, group_by="product", min_amount=7.25)
    assert ctx.rows("summary") == [
        {"product": "cake", "orders": 1, "revenue": 7.25, "average": 7.25},
        {"product": "tea", "orders": 3, "revenue": 60.5, "average": 20.17},
    ]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"group_bye": "region"}, UnknownParamError),
        ({"group_by": "customer"}, ParamsError),  # not one of the allowed columns
        ({"min_amount": -1}, ParamsError),
        ({"min_amount": "a lot"}, ParamsError),
        ({"min_amount": 2**60}, ParamsError),  # beyond what a spec carries exactly
    ],
)
def test_bad_parameters_are_refused_before_any_data(
    spark: Any, params: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        LocalContext(spark, module=jobs.sales_summary, inputs={}, params=params)
