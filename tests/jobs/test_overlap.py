"""``jobs/overlap.py``: shared customers per segment, normalised emails, k-suppression."""

from __future__ import annotations

from typing import Any

import pytest

import jobs.overlap
from jobruntime.job.errors import ParamsError, UnknownParamError
from jobruntime.testing import LocalContext

A = [
    ("ann@example.com", "retail"),
    ("bob@example.com", "retail"),
    ("cat@example.com", "retail"),
    ("dan@example.com", "online"),
    ("eve@example.com", "online"),  # not in b
]
B = [
    ("  ANN@example.com ", "x"),  # same address once trimmed and lower-cased
    ("bob@example.com", "x"),
    ("bob@example.com", "y"),  # a duplicate in b counts once
    ("cat@EXAMPLE.com", "x"),
    ("dan@example.com", "x"),
    ("zed@example.com", "x"),
]


def run(spark: Any, **params: Any) -> LocalContext:
    ctx = LocalContext(
        spark,
        module=jobs.overlap,
        inputs={
            "customers_a": spark.createDataFrame(A, "email string, segment string"),
            "customers_b": spark.createDataFrame(B, "email string, segment string"),
        },
        outputs=["overlap"],
        params=params,
    )
    jobs.overlap.run(ctx)
    return ctx


def test_counts_shared_customers_and_suppresses_small_segments(spark: Any) -> None:
    ctx = run(spark, k=2)
    assert ctx.rows("overlap") == [{"segment": "retail", "customers": 3}]  # online: 1 < k
    assert ctx.params.k == 2 and ctx.params.hash_key == "clean-room"


def test_the_hash_key_keeps_counts_and_a_larger_k_suppresses_more(spark: Any) -> None:
    ctx = run(spark, k=2, hash_key="another-key")
    assert ctx.rows("overlap") == [{"segment": "retail", "customers": 3}]
    assert run(spark, k=4).rows("overlap") == []


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"kay": 3}, UnknownParamError),
        ({"k": 1}, ParamsError),  # below the smallest group size
        ({"k": "ten"}, ParamsError),
        ({"hash_key": "short"}, ParamsError),
    ],
)
def test_bad_parameters_are_refused_before_any_data(
    spark: Any, params: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        LocalContext(spark, module=jobs.overlap, inputs={}, params=params)
