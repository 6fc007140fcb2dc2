"""``jobs/redaction.py``: PII columns hashed with a key, masked or dropped."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

import jobs.redaction
from jobruntime.job.errors import ParamsError, UnknownParamError
from jobruntime.testing import LocalContext, Logged

ROWS = [(1, "ann@example.com", "555-0101", 12.5), (2, None, "555-0102", 3.0)]
SCHEMA = "id int, email string, phone string, amount double"


def run(spark: Any, **params: Any) -> LocalContext:
    records = spark.createDataFrame(ROWS, SCHEMA)
    ctx = LocalContext(
        spark,
        module=jobs.redaction,
        inputs={"records": records},
        outputs=["redacted"],
        params=params,
    )
    jobs.redaction.run(ctx)
    return ctx


def keyed(key: str, value: str) -> str:
    return hashlib.sha256((key + value).encode()).hexdigest()


def test_hash_replaces_pii_with_a_keyed_sha256(spark: Any) -> None:
    ctx = run(spark, pii_columns=["email", "phone"], hash_key="k" * 12)
    assert ctx.rows("redacted") == [
        {
            "id": 1,
            "email": keyed("k" * 12, "ann@example.com"),
            "phone": keyed("k" * 12, "555-0101"),
            "amount": 12.5,
        },
        {"id": 2, "email": None, "phone": keyed("k" * 12, "555-0102"), "amount": 3.0},
    ]
    assert ctx.logged == [
        Logged("INFO", "redacted", {"columns": 2, "method": "hash"}),
        Logged("INFO", "output_written", {"dataset": "redacted"}),
    ]


def test_mask_and_drop(spark: Any) -> None:
    masked = run(spark, pii_columns=["email"], method="mask").rows("redacted")
    assert [r["email"] for r in masked] == ["***", "***"]
    assert [r["phone"] for r in masked] == ["555-0101", "555-0102"]
    dropped = run(spark, pii_columns=["email", "phone"], method="drop")
    assert dropped.outputs["redacted"].columns == ["id", "amount"]
    assert dropped.rows("redacted") == [{"id": 1, "amount": 12.5}, {"id": 2, "amount": 3.0}]


def test_a_column_not_in_the_input_fails_the_job(spark: Any) -> None:
    with pytest.raises(ValueError, match="columns not in the input: ssn"):
        run(spark, pii_columns=["email", "ssn"])


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"pii_columns": ["email"], "methd": "mask"}, UnknownParamError),
        ({}, ParamsError),  # pii_columns is required
        ({"pii_columns": []}, ParamsError),
        ({"pii_columns": "email"}, ParamsError),  # a text, not a list
        ({"pii_columns": ["email"], "method": "encrypt"}, ParamsError),
        ({"pii_columns": [["email"]]}, ParamsError),  # a spec cannot carry nested lists
    ],
)
def test_bad_parameters_are_refused_before_any_data(
    spark: Any, params: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        LocalContext(spark, module=jobs.redaction, inputs={}, params=params)
