"""``ctx``: what a job module's ``run(ctx)`` gets, and the only way it touches data.

Reads and writes name datasets by the logical names the signed spec declares;
anything else is refused before any I/O. Keys stay in the key agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobruntime.job.errors import UndeclaredDatasetError
from jobruntime.job.log import JobLogger
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.spec.models import Dataset, JobRunSpec


@dataclass
class JobContext:
    spark: Any
    params: Any
    spec: JobRunSpec
    socket: str
    log: JobLogger
    written: dict[str, Dataset] = field(default_factory=dict)

    def read(self, name: str) -> Any:
        """A DataFrame over the latest verified version of a declared input."""
        dataset = self._declared(name, self.spec.inputs, "input")
        return (
            self.spark.read.format("confidential")
            .option("dataset", name)
            .option("keyId", dataset.key_id)
            .option("keyAgentSocket", self.socket)
            .load(dataset.uri)
        )

    def write(self, df: Any, name: str) -> None:
        """Write a declared output as a new version of its dataset."""
        dataset = self._declared(name, self.spec.outputs, "output")
        (
            df.write.format("confidential")
            .option("dataset", name)
            .option("keyId", dataset.key_id)
            .option("keyAgentSocket", self.socket)
            .mode("overwrite")
            .save(dataset.uri)
        )
        self.written[name] = dataset
        self.log.info("output_written", dataset=name)

    def published(self) -> dict[str, tuple[int, str]]:
        """Each written output's version and manifest digest, as the control plane has it."""
        agent = KeyAgentClient(self.socket)
        found = {}
        for name in self.written:
            latest = agent.latest_version(name)
            if latest is not None:
                found[name] = latest
        return found

    def _declared(self, name: str, datasets: list[Dataset], kind: str) -> Dataset:
        for d in datasets:
            if d.name == name:
                return d
        declared = ", ".join(d.name for d in datasets) or "none"
        raise UndeclaredDatasetError(
            f"{name!r} is not an {kind} of run {self.spec.run_id} (declared: {declared})"
        )
