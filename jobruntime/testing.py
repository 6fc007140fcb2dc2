"""Unit-test a job module on plaintext DataFrames, with the ``ctx`` it gets in a real run.

A confidential run takes tens of seconds and needs signed specs, owners' approvals and
encrypted datasets; a job's logic does not. :class:`LocalContext` is the real
:class:`~jobruntime.job.context.JobContext` with reads and writes swapped for the
DataFrames a test gives and captures. Everything else is the runtime's own code, so a
test fails where the run would: parameters are validated by the module's ``Params``
exactly as the driver does (undeclared names refused), ``LOG_FIELDS`` is checked when
the context is built, ``ctx.log`` is the real job logger (its lines are kept in
``ctx.logged``), and a dataset name the run does not declare is refused with the same
error. :func:`load_job` loads a job file as the driver does (pickled by value, so
module-level UDFs run on Spark's workers) and :func:`run_job` runs one.

Only for tests on your own data: nothing here encrypts, verifies or attests anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sys
import types
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jobruntime.job import module as job_module
from jobruntime.job.context import JobContext
from jobruntime.job.errors import ParamsError, UndeclaredDatasetError
from jobruntime.job.log import JobLogger
from jobruntime.spec import rules
from jobruntime.spec.codec import describe
from jobruntime.spec.models import (
    ApprovalPolicy,
    Dataset,
    JobModule,
    JobRunSpec,
    ValidityWindow,
    Workload,
    utcnow,
)

__all__ = ["LocalContext", "Logged", "load_job", "run_job"]

OWNER = "local"
_NO_DIGEST = "0" * 64


@dataclass(frozen=True)
class Logged:
    """One ``ctx.log`` line as the run would print it, split for assertions."""

    level: str
    event: str
    fields: dict[str, Any]  # what survived the allow-list, and ``dropped_fields`` if any


class _Capture(logging.Handler):
    """Keeps the lines of one context's run (by run id) from the job's logger."""

    def __init__(self, run_id: str, into: list[Logged]) -> None:
        super().__init__(logging.DEBUG)
        self._run_id, self._into = run_id, into

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(record.getMessage())
        if line.pop("run_id", None) != self._run_id:
            return  # another context's run of the same job
        line.pop("job", None)
        self._into.append(Logged(record.levelname, line.pop("event"), line))


def _dataset(name: str, kind: str) -> Dataset:
    try:
        return Dataset(name=name, uri=f"local://{kind}/{name}", key_id=f"local/{name}", owner=OWNER)
    except ValidationError:
        raise UndeclaredDatasetError(
            f"{name!r} is not a dataset name (lowercase letters, digits, _ and -)"
        ) from None


def _spec(
    module: types.ModuleType, params: Mapping[str, Any], inputs: list[str], outputs: list[str]
) -> JobRunSpec:
    """A spec as the control plane would sign it for this run, with placeholder data."""
    stem = module.__name__.rpartition(".")[2].replace("_", "-")  # as submit names the job
    path = getattr(module, "__file__", None)
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else _NO_DIGEST
    except OSError:
        digest = _NO_DIGEST
    now = utcnow()
    try:
        body = {
            "job_id": stem if re.fullmatch(rules.NAME, stem) else "job",
            "workspace": OWNER,
            "module": JobModule(
                import_name=module.__name__
                if re.fullmatch(rules.IMPORT_NAME, module.__name__)
                else "job",
                sha256=digest,
            ),
            "image_digest": "sha256:" + _NO_DIGEST,
            "run_id": f"run-local-{secrets.token_hex(6)}",
            "validity": ValidityWindow(not_before=now, expires=now + timedelta(hours=1)),
            "nonce": secrets.token_hex(32),
            "approval_policy": ApprovalPolicy(required_owners=[OWNER]),
            "workload": Workload(isolation="node"),
            "inputs": [_dataset(n, "inputs") for n in inputs],
            "outputs": [_dataset(n, "outputs") for n in outputs],
        }
        JobRunSpec.model_validate(body)  # everything but the parameters is ours: must pass
    except ValidationError as exc:
        raise UndeclaredDatasetError(f"inputs and outputs: {describe(exc)}") from None
    try:
        return JobRunSpec.model_validate({**body, "parameters": dict(params)})
    except ValidationError as exc:  # what submit refuses before anything is signed
        raise ParamsError(
            f"parameters a spec cannot carry (a boolean, a number within +-2^53, a text or "
            f"a list of those, under lowercase names): {describe(exc)}"
        ) from None


class LocalContext(JobContext):
    """``ctx`` for a unit test: reads the given DataFrames, captures what the job writes.

    ``inputs`` maps each input's name to its DataFrame; ``outputs`` names the outputs
    the run declares (``None``: whatever the job writes). ``params`` are the run's
    parameters as ``--param`` would give them; ``ctx.params`` is what ``Params`` makes
    of them. The module is registered to be pickled by value, as the driver does.
    """

    def __init__(
        self,
        spark: Any,
        *,
        module: types.ModuleType,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
        outputs: Iterable[str] | None = None,
    ) -> None:
        declared = None if outputs is None else list(outputs)
        spec = _spec(module, params or {}, list(inputs), declared or [])
        validated = job_module.params(module, dict(spec.parameters))
        log = JobLogger(spec.run_id, spec.job_id, fields=job_module.log_fields(module))
        super().__init__(spark=spark, params=validated, spec=spec, log=log, agent_socket="")
        if module.__name__ in sys.modules:  # else cloudpickle pickles it by value anyway
            job_module.pickle_by_value(module)
        self.module = module
        self.inputs = dict(inputs)
        self.any_output = declared is None
        self.outputs: dict[str, Any] = {}
        self.logged: list[Logged] = []
        logger = logging.getLogger(f"jobruntime.job.{spec.job_id}")
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)  # the driver logs at INFO; a test's root may not
        handler = _Capture(spec.run_id, self.logged)
        logger.addHandler(handler)
        weakref.finalize(self, logger.removeHandler, handler)

    def __repr__(self) -> str:
        return f"LocalContext(job={self.spec.job_id!r}, run_id={self.spec.run_id!r})"

    def read(self, name: str) -> Any:
        """The DataFrame the test gave for a declared input."""
        self._declared(name, self.spec.inputs, "input")
        return self.inputs[name]

    def write(self, df: Any, name: str) -> None:
        """Run the query now, as the real write does, and keep its result in ``outputs``.

        A failing query (a UDF that raises, a bad cast under ANSI mode) fails here,
        inside ``run(ctx)``, as it would in a confidential run.
        """
        if self.any_output and self.spec.dataset(name) is None:
            dataset = _dataset(name, "outputs")
        else:
            dataset = self._declared(name, self.spec.outputs, "output")
        self.outputs[name] = df.localCheckpoint(eager=True)
        self.written[name] = dataset
        self.log.info("output_written", dataset=name)

    def published(self) -> dict[str, tuple[int, str]]:
        """Nothing is published: outputs stay in ``outputs``."""
        return {}

    def rows(self, name: str) -> list[dict[str, Any]]:
        """An output's rows as dicts, in the order the job left them."""
        return [row.asDict(recursive=True) for row in self.outputs[name].collect()]


def load_job(path: str | Path, import_name: str | None = None) -> types.ModuleType:
    """Load a job file as the driver does: its bytes, pinned by digest, pickled by value.

    ``import_name`` defaults to ``jobs.<file stem>``, the name a spec gives it.
    """
    file = Path(path)
    pinned = JobModule(
        import_name=import_name or f"jobs.{file.stem}",
        sha256=hashlib.sha256(file.read_bytes()).hexdigest(),
    )
    return job_module.load(file, pinned)


def run_job(
    spark: Any,
    job: str | Path | types.ModuleType,
    *,
    inputs: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    outputs: Iterable[str] | None = None,
    entry: str = "run",
) -> LocalContext:
    """Run a job (a file, or a module) on the given DataFrames; its ``ctx`` holds the results.

    The job's own exceptions propagate unchanged: a test wants the message the real
    run's report leaves out.
    """
    module = job if isinstance(job, types.ModuleType) else load_job(job)
    function = job_module.entry(module, entry)
    ctx = LocalContext(spark, module=module, inputs=inputs, params=params, outputs=outputs)
    function(ctx)
    return ctx
