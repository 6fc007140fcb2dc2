"""Why a job module could not run; the driver entry exits with these codes."""

from __future__ import annotations

from jobruntime.errors import JobRuntimeError


class JobError(JobRuntimeError):
    """The job could not run."""

    code = "job.failed"
    exit_code = 26


class UndeclaredDatasetError(JobError):
    """The job asked for a dataset its spec does not declare (refused before any I/O)."""

    code = "job.undeclared_dataset"


class ParamsError(JobError):
    """The spec's parameters do not validate against the module's ``Params`` model."""

    code = "job.params"
    exit_code = 25


class UnknownParamError(ParamsError):
    """A parameter the module's ``Params`` model does not declare (a misspelled name)."""

    code = "job.params_unknown"


class ModuleLoadError(JobError):
    """The job module could not be imported or has no entry function."""

    code = "job.module"


class JobCancelledError(JobError):
    """The control plane cancelled the run; the heartbeat sidecar stopped the driver."""

    code = "job.cancelled"
    exit_code = 29
