"""A failing job's data stays out of every log: Spark's, PySpark's and the driver's.

The review finding: a job casting a string column to int, failing on a customer id,
wrote that id into the driver log seven times. The slow test runs the real
``spark-submit`` with ``spark-conf/`` (its ``log4j2.properties``) on a CSV whose one
bad value is a sentinel, fails in the ways that quote values (an ANSI cast in a
collect, in a cached count and in ``toPandas`` with its Arrow fallback warning, a
UDF that raises with the value), and checks that the sentinel is in no output and no
file the run wrote, while :func:`describe_failure` still names type and line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobruntime.dev.cluster import spark_bin, spark_env
from jobruntime.job import failure
from jobruntime.job.failure import describe_failure, leaky_spark_settings, quiet_python_logging
from jobruntime.sparkconf.spark_home import default_conf_dir

SENTINEL = "SENTINEL-7f3a91"

JOB = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path

    from jobruntime.job.failure import describe_failure, leaky_spark_settings, quiet_python_logging
    from jobruntime.job.log import JobLogger

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    quiet_python_logging()

    from pyspark.sql import SparkSession, functions as F

    data = sys.argv[1]
    spark = SparkSession.builder.appName("sentinel").getOrCreate()
    rows = spark.read.csv(data, schema="cid string")

    def report(label, exc):
        print(label, describe_failure(exc, Path(__file__)), flush=True)

    @F.udf("string")
    def check(value):
        raise ValueError("bad customer " + value)  # LINE:udf-raise

    try:
        rows.select(F.col("cid").cast("int")).collect()  # LINE:cast
    except Exception as exc:
        report("cast", exc)
    try:
        rows.select(F.col("cid").cast("int").alias("n")).cache().count()  # LINE:cache
    except Exception as exc:
        report("cache", exc)
    try:
        rows.select(F.col("cid").cast("int").alias("n")).toPandas()  # LINE:pandas
    except Exception as exc:
        report("pandas", exc)
    try:
        rows.select(check("cid")).collect()  # LINE:udf
    except Exception as exc:
        report("udf", exc)
    value = Path(data).read_text().split()[-1]  # what a careless job might log
    JobLogger("run-1", "sentinel").info(f"bad {value}", cid=value, rows=value)
    spark.stop()
    """
)
# Where each failure must be reported, by the marker comment on its line.
EXPECTED = {
    "cast": "NumberFormatException (CAST_INVALID_INPUT)",
    "cache": "NumberFormatException (CAST_INVALID_INPUT)",
    "pandas": "NumberFormatException (CAST_INVALID_INPUT)",
}


def _line_of(marker: str) -> int:
    return next(i for i, ln in enumerate(JOB.splitlines(), 1) if f"# LINE:{marker}" in ln)


def _files_holding(root: Path, needle: bytes, skip: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p != skip and needle in p.read_bytes()
    ]


@pytest.mark.slow
def test_a_failing_cast_leaves_the_value_in_no_output_and_no_file(tmp_path: Path) -> None:
    data = tmp_path / "in" / "customers.csv"
    data.parent.mkdir()
    data.write_text(f"1042\n77\n{SENTINEL}\n")
    script = tmp_path / "job.py"
    script.write_text(JOB)
    for name in ("local", "jvm-tmp", "py-tmp"):
        (tmp_path / name).mkdir()
    env = spark_env(default_conf_dir())
    repo = str(Path(__file__).resolve().parents[1])
    env.update(
        PYTHONPATH=os.pathsep.join([repo, *filter(None, [env.get("PYTHONPATH")])]),
        TMPDIR=str(tmp_path / "py-tmp"),
    )
    env.pop("JOBRUNTIME_DEBUG", None)
    cmd = [
        str(spark_bin("spark-submit")),
        "--master",
        "local[2]",
        "--conf",
        "spark.sql.ansi.enabled=true",
        "--conf",
        f"spark.local.dir={tmp_path / 'local'}",
        "--conf",
        f"spark.driver.extraJavaOptions=-Djava.io.tmpdir={tmp_path / 'jvm-tmp'}",
        str(script),
        str(data),
    ]
    done = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err[-3000:]
    assert SENTINEL not in out, out
    assert SENTINEL not in err, err
    assert _files_holding(tmp_path, SENTINEL.encode(), skip=data) == []
    # The Spark log config is the one in force: no INFO progress (only which security
    # settings took effect), no stack traces.
    infos = [ln for ln in err.splitlines() if " INFO " in ln]
    assert all(" INFO SecurityManager: " in ln for ln in infos), infos
    assert "\tat org.apache" not in err
    for label, what in EXPECTED.items():
        assert f"{label} job raised {what} at job.py:{_line_of(label)}" in out, out
    # A UDF's failure points into the UDF (PySpark rebuilds the worker's traceback
    # frames, file and line only), or at the action if that ever stops.
    udf = "udf job raised PythonException (PYTHON_EXCEPTION) at job.py:"
    assert any(f"{udf}{_line_of(m)}\n" in out for m in ("udf-raise", "udf")), out
    assert '"event": "<event>"' in out and '"rows": "<str>"' in out and '"dropped_fields": 1' in out


# --- describe_failure and quiet_python_logging, without Spark ----------------------


def _run_job(tmp_path: Path, source: str, **names: Any) -> BaseException:
    """Execute ``source`` as the job file ``job.py`` and return what its ``run()`` raised."""
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(source))
    scope: dict[str, Any] = dict(names)
    exec(compile(path.read_text(), str(path), "exec"), scope)  # noqa: S102 - test input
    try:
        scope["run"]()
    except Exception as exc:
        return exc
    raise AssertionError("the job did not raise")


def test_describe_failure_names_type_and_deepest_job_line(tmp_path: Path) -> None:
    exc = _run_job(
        tmp_path,
        f"""
        def parse(v):
            return int(v)

        def run():
            return parse({SENTINEL!r})
        """,
    )
    assert SENTINEL in str(exc)
    assert describe_failure(exc, tmp_path / "job.py") == "job raised ValueError at job.py:3"


def test_describe_failure_points_at_the_job_line_that_called_the_library(tmp_path: Path) -> None:
    def library(value: str) -> None:
        raise RuntimeError(f"cannot cast {value}")

    exc = _run_job(tmp_path, f"def run():\n    library({SENTINEL!r})\n", library=library)
    assert describe_failure(exc, tmp_path / "job.py") == "job raised RuntimeError at job.py:2"


def test_describe_failure_reads_only_a_registry_shaped_condition(tmp_path: Path) -> None:
    class Captured(Exception):
        def __init__(self, condition: Any) -> None:
            super().__init__(f"The value '{SENTINEL}' cannot be cast")
            self.condition = condition

        def getCondition(self) -> Any:
            if isinstance(self.condition, Exception):
                raise self.condition
            return self.condition

    job = tmp_path / "job.py"
    cases = {
        "CAST_INVALID_INPUT": " (CAST_INVALID_INPUT)",
        "INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_FIND_DATA": (
            " (INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_FIND_DATA)"
        ),
        f"The value '{SENTINEL}'": "",
        "CAST_INVALID_INPUT\n": "",
        "A" * 129: "",
        None: "",
        RuntimeError("the JVM is gone"): "",
    }
    for condition, shown in cases.items():
        line = describe_failure(Captured(condition), job)
        assert line == f"job raised Captured{shown} outside job.py", condition


def test_describe_failure_names_the_java_class_of_an_unconverted_error(tmp_path: Path) -> None:
    class JavaClass:
        def __init__(self, name: str) -> None:
            self.name = name

        def getName(self) -> str:
            return self.name

    class JavaException:
        def __init__(self, name: str) -> None:
            self.cls = JavaClass(name)

        def getClass(self) -> JavaClass:
            return self.cls

    class Py4JJavaError(Exception):
        def __init__(self, name: str) -> None:
            super().__init__(SENTINEL)
            self.java_exception = JavaException(name)

    job = tmp_path / "job.py"
    assert describe_failure(Py4JJavaError("java.lang.NumberFormatException"), job) == (
        "job raised Py4JJavaError (java.lang.NumberFormatException) outside job.py"
    )
    assert describe_failure(Py4JJavaError(f"x {SENTINEL}"), job) == (
        "job raised Py4JJavaError outside job.py"
    )


def test_describe_failure_follows_the_chain_and_hides_odd_type_names(tmp_path: Path) -> None:
    exc = _run_job(
        tmp_path,
        f"""
        def run():
            try:
                int({SENTINEL!r})
            except ValueError:
                raise Odd("wrapped")
        """,
        Odd=type("odd name!", (Exception,), {}),
    )
    assert describe_failure(exc, tmp_path / "job.py") == "job raised <exception> at job.py:6"
    outside = KeyError(SENTINEL)
    outside.__context__ = exc
    assert describe_failure(outside, tmp_path / "job.py") == "job raised KeyError at job.py:6"


@pytest.fixture
def restored_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo :func:`quiet_python_logging`'s process-wide changes after the test."""
    from pyspark.logger import PySparkLogger

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    names = ["py4j", "py4j.clientserver", "py4j.java_gateway", *failure.PYSPARK_MESSAGE_LOGGERS]
    loggers = [
        PySparkLogger.getLogger(n) if n in failure.PYSPARK_MESSAGE_LOGGERS else logging.getLogger(n)
        for n in names
    ]
    saved = [(lg, lg.level, lg.propagate, lg.disabled, list(lg.handlers)) for lg in loggers]
    yield
    for lg, level, propagate, disabled, handlers in saved:
        lg.setLevel(level)
        lg.propagate, lg.disabled, lg.handlers = propagate, disabled, handlers


@pytest.mark.usefixtures("restored_logging")
def test_quiet_python_logging_closes_the_channels_that_print_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pyspark.logger import PySparkLogger

    quiet_python_logging()
    for name in ("py4j", "py4j.clientserver", "py4j.java_gateway"):
        logging.getLogger(name).error("Answer received: %s", SENTINEL)
    # What pyspark.errors.exceptions.base does for every captured exception:
    context_logger = PySparkLogger.getLogger("DataFrameQueryContextLogger")
    context_logger.exception(SENTINEL, file="job.py", line="3", fragment="cast", errorClass="X")
    warnings.warn(f"Arrow optimization failed: {SENTINEL}", UserWarning, stacklevel=1)
    worker = threading.Thread(target=lambda: int(SENTINEL), name="leaky")
    worker.start()
    worker.join()
    captured = capsys.readouterr()
    assert SENTINEL not in captured.out + captured.err
    assert "warning: UserWarning at test_spark_logging.py:" in captured.err
    assert "jobruntime-driver: a thread raised ValueError" in captured.err


def test_the_job_file_line_is_found_through_a_symlinked_path(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    exc = _run_job(real, "def run():\n    raise KeyError('x')\n")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert describe_failure(exc, link / "job.py") == "job raised KeyError at job.py:2"


def test_settings_that_route_exception_text_past_the_log_config_are_found() -> None:
    assert (
        leaky_spark_settings({"spark.eventLog.enabled": "false", "spark.ui.enabled": "true"}) == []
    )
    # The image's own log4j2 configuration, named on Kubernetes, is the one accepted.
    image = "-Dlog4j2.configurationFile=file:/opt/jobruntime/conf/log4j2.properties"
    assert leaky_spark_settings({"spark.executor.extraJavaOptions": f"-Xss4m {image}"}) == []
    for other in (
        "-Dlog4j2.configurationFile=file:/tmp/chatty.properties",
        f'"{image} -Dlog4j.debug=true"',
        f"{image},file:/tmp/x",
    ):
        assert leaky_spark_settings({"spark.driver.extraJavaOptions": other}) == [
            "spark.driver.extraJavaOptions"
        ]
    assert leaky_spark_settings(
        {
            "spark.eventLog.enabled": "TRUE",
            "spark.executor.extraJavaOptions": "-Dlog4j2.configurationFile=/tmp/all.xml",
            "spark.driver.extraJavaOptions": "-Xss4m",
            "spark.executorEnv.SPARK_CONF_DIR": "/elsewhere",
        }
    ) == [
        "spark.eventLog.enabled",
        "spark.executor.extraJavaOptions",
        "spark.executorEnv.SPARK_CONF_DIR",
    ]
