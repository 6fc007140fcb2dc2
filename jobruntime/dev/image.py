"""The image's fixed paths on this machine: the pod runner's one mapping table.

``Dockerfile.spark`` lays the image out at fixed paths (README, "The image"), and the
rendered pods name those paths. Here there is no image: each path maps to this
checkout, this venv or the emulator's state, by :meth:`DevImage.table` and nothing
else. A container that names an image path the table does not map is refused
(``podrunner.unmapped_path``) rather than run against whatever the machine has there.

What the image pins and a pod cannot choose (the trust root, ``runtime.json``'s
control-plane URL, the job module's directory) the programs take from flags or the
environment only in development mode (``JOBRUNTIME_DEV=1``,
``jobruntime.verification.pinned``); the runner gives them those anchors as the
variables development mode reads (:mod:`jobruntime.dev.launch`).
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jobruntime
from jobruntime.dev.errors import UnmappedPathError
from jobruntime.k8s import layout
from jobruntime.sparkconf.spark_home import default_conf_dir, spark_home
from jobruntime.verification.pinned import JOBS_ROOT, TRUST_ROOT_PATH

SPARK_HOME = "/opt/spark"
"""The Spark image's distribution (``spark-submit``, ``spark-class``, ``jars/``)."""
SPARK_CONF = "/opt/spark/conf"
"""``SPARK_CONF_DIR``: the image's copy of ``spark-conf/``."""
DRIVER_ENTRY = "/opt/jobruntime/driver.py"
JOBS_DIR = str(JOBS_ROOT / "jobs")
LOCAL_SCHEME = "local://"
"""How Spark names a file inside the image (``mainApplicationFile``)."""


@dataclass(frozen=True)
class DevImage:
    """Where each of the image's fixed paths is on this machine."""

    venv_bin: Path
    """``/opt/jobruntime/venv/bin``: this venv's console scripts (``job-verifier``...)."""
    driver_entry: Path
    """``/opt/jobruntime/driver.py``: ``jobruntime/job/driver.py``."""
    jobs_dir: Path
    """``/opt/jobruntime/jobs``: the checkout's ``jobs/`` or a test's module directory."""
    trust_root: Path
    """``/etc/jobruntime/trust-root.json``: the emulator's trust root."""
    spark_conf: Path
    """``/opt/spark/conf``: ``spark-conf/``."""
    log4j2: Path
    """``/opt/jobruntime/conf/log4j2.properties``: ``spark-conf/log4j2.properties``."""
    spark_home: Path
    """``/opt/spark``: the pip-installed pyspark's distribution."""
    test_bin: Path
    """``/usr/bin/test``, which the key agent's startup probe runs."""

    @classmethod
    def checkout(
        cls, trust_root: Path, jobs_dir: Path | None = None, spark_conf: Path | None = None
    ) -> DevImage:
        """This checkout and venv, with the emulator's trust root."""
        package = Path(jobruntime.__file__).resolve().parent
        conf = (spark_conf or default_conf_dir()).resolve()
        return cls(
            venv_bin=Path(sys.executable).parent,
            driver_entry=package / "job" / "driver.py",
            jobs_dir=(jobs_dir or package.parent / "jobs").resolve(),
            trust_root=trust_root.resolve(),
            spark_conf=conf,
            log4j2=conf / "log4j2.properties",
            spark_home=spark_home(),
            test_bin=Path(shutil.which("test") or layout.TEST_BIN),
        )

    def table(self) -> tuple[tuple[str, Path], ...]:
        """Image path → local path; the longest image path that matches wins."""
        return (
            (str(layout.VENV_BIN), self.venv_bin),
            (DRIVER_ENTRY, self.driver_entry),
            (JOBS_DIR, self.jobs_dir),
            (layout.LOG4J2_CONFIG, self.log4j2),
            (str(TRUST_ROOT_PATH), self.trust_root),
            (SPARK_CONF, self.spark_conf),
            (SPARK_HOME, self.spark_home),
            (layout.TEST_BIN, self.test_bin),
        )

    def find(self, image_path: str) -> Path | None:
        """The local path of an image path, or None when the table does not map it."""
        for prefix, local in sorted(self.table(), key=lambda e: -len(e[0])):
            if image_path == prefix:
                return local
            if image_path.startswith(prefix + "/"):
                return local / image_path[len(prefix) + 1 :]
        return None

    def path(self, image_path: str) -> Path:
        """The local path of an image path, refused when the table does not map it."""
        found = self.find(image_path.removeprefix(LOCAL_SCHEME))
        if found is None:
            raise UnmappedPathError(
                f"{image_path} is a path of the image that the runner does not map "
                "(jobruntime.dev.image.DevImage.table)"
            )
        return found

    def rewrite(self, value: str) -> str:
        """A setting's value with every image path in it mapped (``file:/opt/...``).

        One pass, longest image path first, so a mapped path is never mapped again.
        """
        table = dict(self.table())
        prefixes = "|".join(re.escape(p) for p in sorted(table, key=len, reverse=True))
        pattern = re.compile(r"(?<![\w./-])(" + prefixes + r")(?=[/:,;=\s]|$)")
        return pattern.sub(lambda m: str(table[m.group(1)]), value)

    def module(self, import_name: str) -> Path:
        """The job module's file, where the image keeps ``jobs.<name>``."""
        return self.path(str(JOBS_ROOT.joinpath(*import_name.split(".")).with_suffix(".py")))

    def program(self, command: str) -> Path:
        """A container's command: the image's console script, from this venv."""
        if PurePosixPath(command).parent != layout.VENV_BIN:
            raise UnmappedPathError(f"{command} is not one of the image's programs")
        script = self.path(command)
        if not script.is_file():
            raise UnmappedPathError(
                f"{command}: no {script.name} in {self.venv_bin} (install the project there)"
            )
        return script
