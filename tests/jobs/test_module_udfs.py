"""Module-level UDFs through the driver's own loader: the job module is pickled by value.

The driver executes the verified bytes as a module that exists only in its own
process, so Spark's Python workers cannot import it. Each module here is loaded by
``jobruntime.job.module.load`` under a name no process can import, and its UDFs run in
Spark's Python workers (``local[2]`` pickles every UDF to them, as a cluster does).
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import secrets
import types
from pathlib import Path
from typing import Any

import pytest
from pyspark import cloudpickle

from jobruntime.job import module as job_module
from jobruntime.job.log import JobLogger
from jobruntime.spec.models import JobModule

REPO = Path(__file__).resolve().parents[2]

DECORATED = b'''
"""Both kinds of UDF decorated at module level, calling a module-level helper."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pyspark.sql.functions import pandas_udf, udf

FACTOR = 3


def scaled(value: int) -> int:
    return value * FACTOR


@udf("long")
def tripled(value):
    return scaled(value)


@pandas_udf("long")
def doubled(values: pd.Series) -> pd.Series:
    return values * 2


def run(ctx: Any) -> None:
    numbers = ctx.read("numbers")
    ctx.write(numbers.select("n", tripled("n").alias("t"), doubled("n").alias("d")), "out")
'''


class Ctx:
    """The least ``ctx`` a job needs, so nothing but ``load`` registers the module."""

    def __init__(
        self, spark: Any, module: types.ModuleType, params: dict[str, Any], **inputs: Any
    ) -> None:
        self.spark, self.inputs = spark, inputs
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.params = job_module.params(module, params)
        self.log = JobLogger("run-udf-test", "udfs", fields=job_module.log_fields(module))

    def read(self, name: str) -> Any:
        return self.inputs[name]

    def write(self, df: Any, name: str) -> None:
        self.rows[name] = [r.asDict() for r in df.collect()]


def load_unimportable(tmp_path: Path, source: bytes, stem: str) -> types.ModuleType:
    """Load ``source`` as the driver does, under a name whose package does not exist."""
    path = tmp_path / f"{stem}.py"
    path.write_bytes(source)
    package = f"unimportable_{secrets.token_hex(4)}"
    assert importlib.util.find_spec(package) is None
    pinned = JobModule(import_name=f"{package}.{stem}", sha256=hashlib.sha256(source).hexdigest())
    module = job_module.load(path, pinned)
    assert module.__name__ in cloudpickle.list_registry_pickle_by_value()  # type: ignore[no-untyped-call]
    return module


def products(spark: Any) -> Any:
    rows = [("a", "5"), ("b", "15"), ("c", "25"), ("d", "99"), ("e", None)]
    return spark.createDataFrame(rows, "sku string, price string")


def test_price_bands_udfs_run_on_workers_through_the_loader(spark: Any, tmp_path: Path) -> None:
    source = (REPO / "jobs" / "price_bands.py").read_bytes()
    module = load_unimportable(tmp_path, source, "price_bands")
    ctx = Ctx(spark, module, {"edges": [10, 20]}, products=products(spark))
    module.run(ctx)
    assert ctx.rows["bands"] == [
        {"band": 0, "products": 1, "median_price": 5.0},
        {"band": 1, "products": 1, "median_price": 15.0},
        {"band": 2, "products": 2, "median_price": 62.0},
    ]


def test_decorated_module_level_udfs_run_on_workers(spark: Any, tmp_path: Path) -> None:
    module = load_unimportable(tmp_path, DECORATED, "decorated")
    ctx = Ctx(spark, module, {}, numbers=spark.range(1, 4).withColumnRenamed("id", "n"))
    module.run(ctx)
    assert ctx.rows["out"] == [
        {"n": 1, "t": 3, "d": 2},
        {"n": 2, "t": 6, "d": 4},
        {"n": 3, "t": 9, "d": 6},
    ]


def test_without_pickling_by_value_the_udf_cannot_be_shipped(spark: Any, tmp_path: Path) -> None:
    """The control: what jobs met before the fix, so the tests above are not vacuous."""
    source = (REPO / "jobs" / "price_bands.py").read_bytes()
    module = load_unimportable(tmp_path, source, "price_bands")
    cloudpickle.unregister_pickle_by_value(module)  # type: ignore[no-untyped-call]
    ctx = Ctx(spark, module, {"edges": [10, 20]}, products=products(spark))
    with pytest.raises(pickle.PicklingError, match="price_bands"):
        module.run(ctx)
