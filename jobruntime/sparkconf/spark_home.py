"""Where Spark lives and the environment every Spark process of ours runs with.

The pip-installed ``pyspark`` package is a complete Spark distribution (``bin/``,
``jars/``), so ``SPARK_HOME`` is that package's directory and nothing else needs
installing. One function builds the environment for the standalone daemons, for
``spark-submit`` and for the executors they start, so that all of them use the same
interpreter (``PYSPARK_PYTHON``, or Python workers would run the system ``python3``
without our packages), the same ``spark-conf/`` (authenticated, encrypted RPC) and
bind to loopback (``SPARK_LOCAL_IP``, or Spark binds the external interface).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from jobruntime.errors import ConfigError


class SparkHomeError(ConfigError):
    """No usable Spark distribution, Java runtime or Spark configuration directory."""

    code = "config.spark_home"


LOOPBACK = "127.0.0.1"


def default_conf_dir() -> Path:
    """The repository's ``spark-conf/``, next to the ``jobruntime`` package."""
    return Path(__file__).resolve().parents[2] / "spark-conf"


def spark_home() -> Path:
    """The ``pyspark`` package directory, found without importing pyspark (slow)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkHomeError("pyspark is not installed in this interpreter's environment")
    home = Path(spec.origin).resolve().parent
    if not (home / "bin" / "spark-class").is_file() or not (home / "jars").is_dir():
        raise SparkHomeError(f"{home} has no bin/spark-class or jars/: not a full pyspark")
    return home


def spark_bin(name: str) -> Path:
    """A launcher script of the distribution, e.g. ``spark-class`` or ``spark-submit``."""
    path = spark_home() / "bin" / name
    if not path.is_file():
        raise SparkHomeError(f"{path} does not exist")
    return path


def java_home() -> Path:
    """``$JAVA_HOME`` if it holds ``bin/java``, else the JDK behind ``java`` on ``PATH``."""
    env = os.environ.get("JAVA_HOME")
    if env and (Path(env) / "bin" / "java").is_file():
        return Path(env)
    java = shutil.which("java")
    if java is None:
        raise SparkHomeError("no Java runtime: set JAVA_HOME or put java on PATH")
    return Path(java).resolve().parents[1]


def spark_env(conf_dir: Path | None = None) -> dict[str, str]:
    """This process's environment plus what every Spark process of ours needs.

    Returned whole so it can be passed as ``env=`` to ``subprocess``. A stray
    ``_SPARK_AUTH_SECRET`` (how Spark hands the secret to executors) is dropped so a
    secret can only come from where the caller puts it on purpose.
    """
    conf = (conf_dir or default_conf_dir()).resolve()
    if not (conf / "spark-defaults.conf").is_file():
        raise SparkHomeError(f"{conf} has no spark-defaults.conf")
    venv_bin = str(Path(sys.executable).parent)
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {k: v for k, v in os.environ.items() if k != "_SPARK_AUTH_SECRET"}
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_CONF_DIR=str(conf),
        JAVA_HOME=str(java_home()),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        PATH=os.pathsep.join([venv_bin, *rest]),
        SPARK_LOCAL_IP=LOOPBACK,
    )
    return env
