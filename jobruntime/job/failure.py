"""How the driver says a job failed without saying anything about the data.

Exception messages quote data: a failed cast names the value that did not parse, a
UDF's traceback ends in whatever the job put in its ``raise``. So a failure is
reported as the exception's type, Spark's error condition (a fixed name such as
``CAST_INVALID_INPUT`` from Spark's error registry, never its message parameters)
and the line of the job module that was running; never ``str(exc)``.

:func:`quiet_python_logging` closes the Python-side channels that print exception
text by themselves: py4j's loggers, PySpark's query-context loggers (which log the
full message of every captured exception to stderr before the job can catch it),
``warnings`` (PySpark's Arrow fallback warning embeds the conversion error) and
uncaught exceptions in threads. :func:`leaky_spark_settings` finds the Spark settings
that would route exception text past ``spark-conf/log4j2.properties``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

# Bounded so the line fits the control plane's 300-character failure reason.
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_JAVA_CLASS = re.compile(r"^(?=.{1,128}$)[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$")
# Spark's error conditions: "CAST_INVALID_INPUT", "INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_FIND_DATA".
_CONDITION = re.compile(r"^(?=.{1,128}$)[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*){0,2}$")
_CHAIN_DEPTH = 8

# PySpark's CapturedException logs its whole message on these (pyspark.errors.exceptions.base).
PYSPARK_MESSAGE_LOGGERS = ("DataFrameQueryContextLogger", "SQLQueryContextLogger")
_SILENT = logging.CRITICAL + 10


def _type_name(exc: BaseException) -> str:
    name = type(exc).__name__
    return name if _TYPE_NAME.fullmatch(name) else "<exception>"


def _condition(exc: BaseException) -> str | None:
    """Spark's error condition, read without building the message; None if there is none.

    ``getCondition()`` on a PySpark exception (or on the Java exception behind a raw
    ``Py4JJavaError``) returns the registry key, looked up from the error class alone.
    Anything that does not look like a registry key is discarded.
    """
    candidates: list[Any] = [exc, getattr(exc, "java_exception", None)]
    for obj in candidates:
        get = getattr(obj, "getCondition", None)
        if get is None or not callable(get):
            continue
        value = None
        with contextlib.suppress(Exception):  # the JVM may be gone, or the method missing
            value = get()
        if isinstance(value, str) and _CONDITION.fullmatch(value):
            return value
    return None


def _java_class(exc: BaseException) -> str | None:
    """The Java class behind a ``Py4JJavaError`` that PySpark did not convert."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return None
    try:
        name = java.getClass().getName()
    except Exception:
        return None
    return name if isinstance(name, str) and _JAVA_CLASS.fullmatch(name) else None


def _job_line(exc: BaseException, job_file: Path) -> int | None:
    """The line of the deepest frame in ``job_file``, along the exception's chain."""
    target = job_file.resolve()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_DEPTH:
        seen.add(id(current))
        line = None
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename == str(job_file) or Path(filename).resolve() == target:
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is not None:
            return line
        current = current.__cause__ or current.__context__
    return None


def describe_failure(exc: BaseException, job_file: Path) -> str:
    """One line naming what failed and where, e.g.
    ``job raised NumberFormatException (CAST_INVALID_INPUT) at overlap.py:17``.

    Built only from the exception's class, Spark's error condition or Java class, and
    the traceback's line numbers: nothing that the data can reach.
    """
    what = _type_name(exc)
    detail = _condition(exc) or _java_class(exc)
    if detail:
        what = f"{what} ({detail})"
    line = _job_line(exc, job_file)
    where = f" at {job_file.name}:{line}" if line is not None else f" outside {job_file.name}"
    return f"job raised {what}{where}"


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` without the message: category and place only."""
    out = file if file is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError):  # a closed stream: nothing to say
        out.write(f"warning: {category.__name__} at {Path(filename).name}:{lineno}\n")


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """An uncaught exception in a thread: its type, not its message and traceback."""
    if args.exc_type is SystemExit:
        return
    name = args.exc_type.__name__
    name = name if _TYPE_NAME.fullmatch(name) else "<exception>"
    print(f"jobruntime-driver: a thread raised {name}", file=sys.stderr)


def quiet_python_logging() -> None:
    """Close the driver's Python channels that print exception text on their own.

    Call once, before Spark starts and before the job runs. py4j logs the Java side's
    answers (exception text included) at DEBUG and INFO and tracebacks at ERROR, so it
    is silenced entirely; PySpark's query-context loggers are created as PySpark
    expects (a plain logger there would break its ``logger.exception(..., file=...)``
    call) and then silenced.
    """
    py4j = logging.getLogger("py4j")
    py4j.setLevel(_SILENT)
    py4j.propagate = False
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("py4j."):
            logging.getLogger(name).setLevel(_SILENT)
    try:
        from pyspark.logger import PySparkLogger
    except ImportError:  # pyspark absent: nothing of it can log
        pass
    else:
        for name in PYSPARK_MESSAGE_LOGGERS:
            logger = PySparkLogger.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.addHandler(logging.NullHandler())
            logger.setLevel(_SILENT)
            logger.propagate = False
            logger.disabled = True
    warnings.showwarning = _show_warning
    threading.excepthook = _thread_excepthook


# The image's copy of spark-conf/log4j2.properties (Dockerfile.spark): on Kubernetes,
# Spark's ConfigMap replaces /opt/spark/conf, so the SparkApplication names this file
# in the JVMs' options. It is the one log4j option the driver accepts.
IMAGE_LOG4J2 = "/opt/jobruntime/conf/log4j2.properties"
IMAGE_LOGGING_OPTION = f"-Dlog4j2.configurationFile=file:{IMAGE_LOG4J2}"

_JAVA_OPTIONS = (
    "spark.driver.extraJavaOptions",
    "spark.driver.defaultJavaOptions",
    "spark.executor.extraJavaOptions",
    "spark.executor.defaultJavaOptions",
)


def leaky_spark_settings(conf: Mapping[str, str]) -> list[str]:
    """The names of settings in ``conf`` that would write exception text (data) out.

    ``spark-defaults.conf`` has the lowest precedence: a ``--conf`` or a manifest can
    turn the event log on (every failed task's message, to a file or a bucket) or
    point the JVMs at another log4j configuration. The driver checks the live
    ``SparkConf`` and refuses to run the job when this is not empty.
    """
    leaks = []
    if conf.get("spark.eventLog.enabled", "false").strip().lower() != "false":
        leaks.append("spark.eventLog.enabled")
    leaks += [k for k in _JAVA_OPTIONS if _other_log4j(conf.get(k, ""))]
    if "spark.executorEnv.SPARK_CONF_DIR" in conf:
        leaks.append("spark.executorEnv.SPARK_CONF_DIR")
    return leaks


def _other_log4j(options: str) -> bool:
    """Any mention of log4j but the image's own configuration, token for token (a quoted
    or combined token that mentions log4j is not the image's and is refused)."""
    return any("log4j" in t.lower() and t != IMAGE_LOGGING_OPTION for t in options.split())
