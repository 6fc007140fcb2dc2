"""``jobruntime.testing.LocalContext``: the real ``ctx``'s checks, on a test's DataFrames."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import pytest
from pyspark.errors import PythonException

import jobs.redaction
from jobruntime.job.context import JobContext
from jobruntime.job.errors import ModuleLoadError, ParamsError, UndeclaredDatasetError
from jobruntime.testing import LocalContext, Logged, load_job, run_job

PARAMS = {"pii_columns": ["email"]}


def write_job(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "probe.py"
    path.write_text("from typing import Any\n\n" + body)
    return path


def test_undeclared_datasets_are_refused_as_the_real_context_refuses_them(spark: Any) -> None:
    records = spark.createDataFrame([("a",)], "email string")
    ctx = LocalContext(
        spark,
        module=jobs.redaction,
        inputs={"records": records},
        outputs=["redacted"],
        params=PARAMS,
    )
    real = JobContext(spark=spark, params=None, spec=ctx.spec, log=ctx.log, agent_socket="")
    errors: list[str] = []
    for context in (ctx, real):  # the real one refuses before any I/O: no key agent needed
        with pytest.raises(UndeclaredDatasetError) as read_error:
            context.read("customers")
        with pytest.raises(UndeclaredDatasetError) as write_error:
            context.write(records, "records_copy")
        errors += [str(read_error.value), str(write_error.value)]
    assert errors[:2] == errors[2:]
    assert "is not an input of run run-local-" in errors[0]
    assert ctx.read("records") is records
    assert ctx.outputs == {} and ctx.logged == []


def test_without_declared_outputs_any_valid_name_is_captured(spark: Any) -> None:
    ctx = LocalContext(spark, module=jobs.redaction, inputs={}, params=PARAMS)
    ctx.write(spark.range(2), "anything")
    assert ctx.rows("anything") == [{"id": 0}, {"id": 1}]
    assert ctx.written["anything"].name == "anything" and ctx.published() == {}
    with pytest.raises(UndeclaredDatasetError):
        ctx.write(spark.range(1), "Not A Name")


def test_log_lines_pass_the_allow_list_and_stay_with_their_context(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_job(
        tmp_path,
        'LOG_FIELDS = ("region",)\n\n'
        "def run(ctx: Any) -> None:\n"
        '    ctx.log.info("counted", rows=3, region="north", email="a@b.c")\n'
        '    ctx.log.warning(f"bad {ctx.params}")\n',
    )
    caplog.set_level(logging.INFO)
    first = run_job(spark, path, inputs={})
    second = run_job(spark, path, inputs={})
    assert (
        first.logged
        == second.logged
        == [
            Logged("INFO", "counted", {"rows": 3, "region": "north", "dropped_fields": 1}),
            Logged("WARNING", "<event>", {}),
        ]
    )
    assert "a@b.c" not in caplog.text
    handlers = len(logging.getLogger("jobruntime.job.probe").handlers)
    del first, second
    gc.collect()
    assert len(logging.getLogger("jobruntime.job.probe").handlers) == handlers - 2


def test_a_module_without_params_gets_a_dict_and_bad_log_fields_are_refused(
    spark: Any, tmp_path: Path
) -> None:
    path = write_job(tmp_path, "def run(ctx: Any) -> None:\n    ctx.spark.range(1)\n")
    assert run_job(spark, path, inputs={}, params={"k": 3}).params == {"k": 3}
    with pytest.raises(ParamsError):  # a spec cannot carry it, so submit would refuse it
        run_job(spark, path, inputs={}, params={"k": {"nested": 1}})
    bad = write_job(tmp_path, 'LOG_FIELDS = "rows"\n\ndef run(ctx: Any) -> None:\n    pass\n')
    with pytest.raises(ModuleLoadError):
        run_job(spark, bad, inputs={})


def test_write_runs_the_query_so_a_failing_udf_fails_inside_run(spark: Any, tmp_path: Path) -> None:
    path = write_job(
        tmp_path,
        "def explode(value: Any) -> int:\n"
        '    raise ValueError("boom")\n\n'
        "def run(ctx: Any) -> None:\n"
        "    from pyspark.sql import functions as F\n\n"
        '    udf = F.udf(lambda v: explode(v), "int")\n'
        '    ctx.write(ctx.read("numbers").select(udf("id")), "out")\n',
    )
    module = load_job(path)
    with pytest.raises(PythonException, match="boom"):
        run_job(spark, module, inputs={"numbers": spark.range(3)}, outputs=["out"])
