"""``jobs/price_bands.py``: module-level UDFs (a Python UDF and a pandas UDF) on Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobruntime.job.errors import ParamsError, UnknownParamError
from jobruntime.testing import LocalContext, Logged, load_job, run_job

JOB = Path(__file__).resolve().parents[2] / "jobs" / "price_bands.py"
PRODUCTS = [
    ("a", "5"),
    ("b", "7"),
    ("c", "10"),  # an edge belongs to the band above it
    ("d", "20"),
    ("e", "30.5"),
    ("f", "60"),
    ("g", None),  # no price: in no band
]


def test_bands_and_median_prices(spark: Any) -> None:
    products = spark.createDataFrame(PRODUCTS, "sku string, price string")
    ctx = run_job(
        spark,
        JOB,
        inputs={"products": products},
        outputs=["bands"],
        params={"edges": [10, 50]},
    )
    assert ctx.rows("bands") == [
        {"band": 0, "products": 2, "median_price": 6.0},
        {"band": 1, "products": 3, "median_price": 20.0},
        {"band": 2, "products": 1, "median_price": 60.0},
    ]
    assert ctx.params.edges == [10.0, 50.0]
    assert ctx.logged[0] == Logged("INFO", "banded", {"bands": 3})


def test_default_edges(spark: Any) -> None:
    products = spark.createDataFrame(PRODUCTS, "sku string, price string")
    ctx = run_job(spark, JOB, inputs={"products": products})
    assert [(r["band"], r["products"]) for r in ctx.rows("bands")] == [(0, 2), (1, 3), (2, 1)]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"edge": [1, 2]}, UnknownParamError),
        ({"edges": [50, 10]}, ParamsError),  # not ascending
        ({"edges": [10, 10]}, ParamsError),
        ({"edges": []}, ParamsError),
        ({"edges": "cheap"}, ParamsError),
        ({"edges": [1, "two"]}, ParamsError),
    ],
)
def test_bad_parameters_are_refused_before_any_data(
    spark: Any, params: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        LocalContext(spark, module=load_job(JOB), inputs={}, params=params)
