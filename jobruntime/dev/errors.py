"""Typed failures of the local pod runner: exit code 33, the ``podrunner.*`` area.

A refusal of the pods themselves (the verifier's, the KMS's) keeps its own code in the
container's termination message; these say why the runner could not start a pod, or
that one failed, naming the pod and the container as ``kubectl describe pod`` would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobruntime.errors import JobRuntimeError


class PodRunnerError(JobRuntimeError):
    """The rendered YAML cannot be run here as it stands (its shape, sizes or Spark side)."""

    code = "podrunner.invalid"
    exit_code = 33


class UnmappedPathError(PodRunnerError):
    """A container names a path of the image that the runner's mapping table does not map."""

    code = "podrunner.unmapped_path"


class SecretMissingError(PodRunnerError):
    """A pod reads a Kubernetes Secret key the runner was not given (CreateContainerConfigError)."""

    code = "podrunner.secret_missing"


@dataclass(frozen=True)
class ContainerStatus:
    """How a container ended, as ``kubectl get pod -o yaml`` would show its state."""

    pod: str
    container: str
    exit_code: int | None
    """None: it did not end by itself in time (a timeout, a startup probe that never passed)."""
    message: str
    """The termination message (the file, or the log's last lines), or why it failed."""
    log: Path

    def termination(self) -> dict[str, Any] | None:
        """The message as JSON (the verifier writes compact JSON), if it is."""
        try:
            value = json.loads(self.message)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class PodFailedError(PodRunnerError):
    """A pod's container failed: an init container's exit, a probe, or the main container."""

    code = "podrunner.pod_failed"

    def __init__(self, status: ContainerStatus) -> None:
        super().__init__(
            f"pod {status.pod}: container {status.container} failed"
            + (f" with exit code {status.exit_code}" if status.exit_code is not None else "")
            + f": {status.message}"
        )
        self.status = status
