"""Start a pod's containers as local processes, the way a kubelet and the host would.

The launcher measures the pod (:func:`jobruntime.workload.pod.host_data`) and hands
the value to the emulated TEE of each process it starts through
``JOB_EMULATED_HOST_DATA``, a launch parameter outside the measured environment, as
the host hands HOST_DATA to the firmware. The guest never chooses it: a pod started
with anything changed is measured again and gets another value.

Each process gets only its measured environment plus a short allow-list of the
machine's own settings that cannot change what runs (home, locale, time zone, temp
directory, user) and the storage credential (storage is untrusted by design: every
byte read back is authenticated). Nothing else of the caller's environment
(``PYTHONPATH``, ``LD_PRELOAD``, ``JAVA_TOOL_OPTIONS``, ``SPARK_*``, ``JOB_*``...)
reaches a pod's process: what could change its code or configuration is measured or
absent.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobruntime.attestation.providers.choose import EMULATED_HOST_DATA_ENV
from jobruntime.dev.process import ManagedProcess
from jobruntime.workload.pod import ContainerLaunch, host_data

_MACHINE = frozenset({"HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "TERM"})
_STORAGE_CREDENTIAL = "JOBRUNTIME_AZURE_CONNECTION_STRING"


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a pod's process inherits unmeasured from this machine: the allow-list only."""
    env = os.environ if environ is None else environ
    return {
        k: v
        for k, v in env.items()
        if k in _MACHINE or k.startswith("LC_") or k == _STORAGE_CREDENTIAL
    }


@dataclass(frozen=True)
class LocalPod:
    """A pod of local processes sharing one measured HOST_DATA."""

    containers: tuple[ContainerLaunch, ...]

    @classmethod
    def of(cls, containers: Sequence[ContainerLaunch]) -> LocalPod:
        return cls(tuple(containers))

    @property
    def host_data(self) -> bytes:
        """Measured now, from the files as they are: at every launch, as a host would."""
        return host_data(self.containers)

    def container(self, name: str) -> ContainerLaunch:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def environment(self, name: str) -> dict[str, str]:
        c = self.container(name)
        return {
            **base_environment(),
            **c.environment(),
            EMULATED_HOST_DATA_ENV: self.host_data.hex(),
        }

    def run(self, name: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        c = self.container(name)
        return subprocess.run(list(c.argv), env=self.environment(name), **kwargs)

    def managed(self, name: str, log: Path, cwd: Path | None = None) -> ManagedProcess:
        """Container ``name`` as a managed process (not started): output to ``log``."""
        c = self.container(name)
        return ManagedProcess(name, c.argv, log, env=self.environment(name), cwd=cwd)
