"""Start a pod's containers as local processes, the way a kubelet and the host would.

The launcher measures the pod (:func:`jobruntime.workload.pod.host_data`) and hands
the value to the emulated TEE of each process it starts through
``JOB_EMULATED_HOST_DATA``, a launch parameter outside the measured environment, as
the host hands HOST_DATA to the firmware. The guest never chooses it: a pod started
with anything changed is measured again and gets another value.

Each process gets only the measured environment plus what any process needs to run
here (PATH, HOME, Java, Python, the locale); every other ``JOB_*`` and ``JOBRUNTIME_*``
variable of the caller's environment is dropped so nothing unmeasured leaks in.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from jobruntime.attestation.providers.choose import EMULATED_HOST_DATA_ENV
from jobruntime.workload.pod import ContainerLaunch, host_data

_UNMEASURED_PREFIXES = ("JOB_", "JOBRUNTIME_")


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any of our settings (they must be measured)."""
    env = dict(os.environ if environ is None else environ)
    return {k: v for k, v in env.items() if not k.startswith(_UNMEASURED_PREFIXES)}


@dataclass(frozen=True)
class LocalPod:
    """A pod of local processes sharing one measured HOST_DATA."""

    containers: tuple[ContainerLaunch, ...]

    @classmethod
    def of(cls, containers: Sequence[ContainerLaunch]) -> LocalPod:
        return cls(tuple(containers))

    @cached_property
    def host_data(self) -> bytes:
        return host_data(self.containers)

    def container(self, name: str) -> ContainerLaunch:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def environment(self, name: str) -> dict[str, str]:
        c = self.container(name)
        return {**base_environment(), **c.env, EMULATED_HOST_DATA_ENV: self.host_data.hex()}

    def run(self, name: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        c = self.container(name)
        return subprocess.run(list(c.argv), env=self.environment(name), **kwargs)

    def start(self, name: str, **kwargs: Any) -> subprocess.Popen[Any]:
        c = self.container(name)
        return subprocess.Popen(list(c.argv), env=self.environment(name), **kwargs)
