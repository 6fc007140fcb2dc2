"""Typed refusals of ``jobruntime manifest``: exit code 32, the ``manifest.*`` area.

A manifest is rendered only from a spec whose control-plane signature checked out (a
forged or altered one fails with its own ``signature.*``/``envelope.*`` code before
anything here runs). These are the refusals that come after: a run that cannot be
rendered into pods that would get its keys.
"""

from __future__ import annotations

from jobruntime.errors import JobRuntimeError


class ManifestError(JobRuntimeError):
    """The verified run cannot be rendered into a SparkApplication that would work."""

    code = "manifest.invalid"
    exit_code = 32


class HostDataMissingError(ManifestError):
    """Pod isolation, but the signed spec does not name HOST_DATA for every pod role."""

    code = "manifest.host_data_missing"


class PolicyMismatchError(ManifestError):
    """A pod policy's digest is not the HOST_DATA that the signed spec names for its role."""

    code = "manifest.policy_mismatch"


class SecretPathError(ManifestError):
    """spark-conf's secret file is not where the pod's key agent can write it."""

    code = "manifest.secret_path"
