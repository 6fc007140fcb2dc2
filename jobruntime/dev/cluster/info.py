"""What a running local cluster is, as stored in ``cluster.json`` and given to clients.

``spark.authenticate`` is on in ``spark-conf/``. On a standalone cluster Spark does
not generate the secret itself (it does only for local, YARN and Kubernetes masters):
the master, the workers, every application's driver and its executors must all hold
the same ``spark.authenticate.secret``. The daemons get it from the environment
(``_SPARK_AUTH_SECRET``), workers hand it to executors the same way, and the driver
needs it in its configuration: :meth:`ClusterInfo.submit_conf` includes it, and
:meth:`ClusterInfo.submit_args` writes it to a 0600 properties file so that it never
appears on a command line (``/proc/*/cmdline`` is readable by every local user).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobruntime.dev.cluster.errors import ClusterConfigError, ClusterStateError
from jobruntime.sparkconf.spark_home import LOOPBACK


@dataclass(frozen=True)
class ClusterInfo:
    """Addresses, process ids and the secret file of one running cluster.

    ``pids`` maps ``master`` and ``worker-<i>`` to the daemon's pid, which is also
    its process group (each daemon runs in its own session, executors inherit it).
    """

    master_url: str
    web_ui_url: str
    pids: dict[str, int]
    secret_file: Path
    ports: dict[str, int] = field(default_factory=dict)

    def secret(self) -> str:
        try:
            value = self.secret_file.read_text().strip()
        except OSError as exc:
            raise ClusterStateError(f"cannot read {self.secret_file}: {exc.strerror}") from None
        if not value:
            raise ClusterStateError(f"{self.secret_file} is empty")
        return value

    def submit_conf(self) -> dict[str, str]:
        """What a driver (``spark-submit`` or a ``SparkSession``) needs for this cluster.

        Includes the cluster secret: keep the result out of command lines and logs
        (use :meth:`submit_args`). Executors run our interpreter and bind loopback.
        """
        return {
            "spark.master": self.master_url,
            "spark.authenticate": "true",
            "spark.authenticate.secret": self.secret(),
            "spark.driver.host": LOOPBACK,
            "spark.driver.bindAddress": LOOPBACK,
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
            "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
            "spark.executorEnv.SPARK_LOCAL_IP": LOOPBACK,
        }

    def submit_args(self, properties_file: Path, extra: dict[str, str] | None = None) -> list[str]:
        """``spark-submit`` options for this cluster, the secret kept in a 0600 file.

        ``--load-spark-defaults`` keeps ``spark-conf/spark-defaults.conf`` in force,
        which ``--properties-file`` alone would replace. ``extra`` settings (tuning,
        not secrets) go to the same file; they win over :meth:`submit_conf`.
        """
        conf = {**self.submit_conf(), **(extra or {})}
        write_private(properties_file, "".join(f"{k}={_escape(v)}\n" for k, v in conf.items()))
        return [
            "--master",
            self.master_url,
            "--properties-file",
            str(properties_file),
            "--load-spark-defaults",
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "master_url": self.master_url,
            "web_ui_url": self.web_ui_url,
            "pids": self.pids,
            "ports": self.ports,
            "secret_file": str(self.secret_file),
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> ClusterInfo:
        try:
            return cls(
                master_url=str(data["master_url"]),
                web_ui_url=str(data["web_ui_url"]),
                pids={str(k): int(v) for k, v in data["pids"].items()},
                secret_file=Path(data["secret_file"]),
                ports={str(k): int(v) for k, v in data.get("ports", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ClusterStateError(f"{where} is not a cluster state file") from None

    @classmethod
    def load(cls, path: Path) -> ClusterInfo | None:
        """The state in ``path``, or None when there is none."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClusterStateError(f"cannot read {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise ClusterStateError(f"{path} is not JSON") from None
        return cls.from_json(data, path)

    def save(self, path: Path) -> None:
        """Written whole or not at all (temporary file, then rename)."""
        tmp = path.with_name(path.name + ".tmp")
        write_private(tmp, json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)


def write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, before any byte is written to it."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _escape(value: str) -> str:
    """Java properties escaping for the values we write (paths, URLs, hex)."""
    if "\n" in value or "\r" in value:
        raise ClusterConfigError("a Spark setting may not contain a line break")
    return value.replace("\\", "\\\\")
