"""``ctx``: what a job module's ``run(ctx)`` gets, and the only way it touches data.

Reads and writes name datasets by the logical names the signed spec declares;
anything else is refused before any I/O. ``ctx`` offers no key, no token and no
socket: master keys stay in the key agent, which only wraps and unwraps KEKs of the
spec's datasets. The agent's address is private to the data source (and in the
query plan's options); code running in the driver could still find it, and through
it unwrap KEKs of the run's inputs it may read anyway, never a master key.

Reads and writes take Spark's native Parquet path (:mod:`jobruntime.native`: the same
files, manifest checks and commit, decoded by Spark's own engine) whenever the
``java/jobruntime-kms`` jar is on the JVM's class path and the dataset is local; else
the ``confidential`` Python data source, with a warning in the job's log naming why.
"""

from __future__ import annotations

from typing import Any

from jobruntime.job.errors import UndeclaredDatasetError
from jobruntime.job.log import JobLogger
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.spec.models import Dataset, JobRunSpec


class JobContext:
    __slots__ = ("__agent_socket", "__native_jar", "log", "params", "spark", "spec", "written")

    def __init__(
        self, *, spark: Any, params: Any, spec: JobRunSpec, log: JobLogger, agent_socket: str
    ) -> None:
        self.spark, self.params, self.spec, self.log = spark, params, spec, log
        self.__agent_socket = agent_socket
        self.__native_jar: bool | None = None
        self.written: dict[str, Dataset] = {}

    def __repr__(self) -> str:
        return f"JobContext(run_id={self.spec.run_id!r})"

    def read(self, name: str) -> Any:
        """A DataFrame over the latest verified version of a declared input."""
        dataset = self._declared(name, self.spec.inputs, "input")
        if self._native(name, dataset.uri):
            from jobruntime.native.read import read

            return read(
                self.spark,
                uri=dataset.uri,
                dataset=name,
                key_id=dataset.key_id,
                socket=self.__agent_socket,
            )
        return (
            self.spark.read.format("confidential")
            .option("dataset", name)
            .option("keyId", dataset.key_id)
            .option("keyAgentSocket", self.__agent_socket)
            .load(dataset.uri)
        )

    def write(self, df: Any, name: str) -> None:
        """Write a declared output as a new version of its dataset."""
        dataset = self._declared(name, self.spec.outputs, "output")
        if self._native(name, dataset.uri):
            from jobruntime.native.write import write

            write(
                df, uri=dataset.uri, dataset=name, key_id=dataset.key_id, socket=self.__agent_socket
            )
        else:
            (
                df.write.format("confidential")
                .option("dataset", name)
                .option("keyId", dataset.key_id)
                .option("keyAgentSocket", self.__agent_socket)
                .mode("overwrite")
                .save(dataset.uri)
            )
        self.written[name] = dataset
        self.log.info("output_written", dataset=name)

    def published(self) -> dict[str, tuple[int, str]]:
        """Each written output's version and manifest digest, as the control plane has it."""
        agent = KeyAgentClient(self.__agent_socket)
        found = {}
        for name in self.written:
            latest = agent.latest_version(name)
            if latest is not None:
                found[name] = latest
        return found

    def _native(self, name: str, uri: str) -> bool:
        """Whether this dataset goes through Spark's native Parquet path; if not, say why."""
        from jobruntime.native import jvm, options

        if self.__native_jar is None:
            self.__native_jar = jvm.jar_loaded(self.spark)
        if not self.__native_jar:
            reason = "jar_not_on_class_path"
        elif options.hadoop_root(uri) is None:
            reason = "remote_storage"
        else:
            return True
        self.log.warning("native_parquet_unavailable", dataset=name, step=reason)
        return False

    def _declared(self, name: str, datasets: list[Dataset], kind: str) -> Dataset:
        for d in datasets:
            if d.name == name:
                return d
        declared = ", ".join(d.name for d in datasets) or "none"
        raise UndeclaredDatasetError(
            f"{name!r} is not an {kind} of run {self.spec.run_id} (declared: {declared})"
        )
