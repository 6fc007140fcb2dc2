"""A rendered pod template as local container launches: the runner's kubelet side.

Each container becomes a :class:`~jobruntime.workload.pod.ContainerLaunch`, and the
pod a :class:`~jobruntime.dev.localpod.LocalPod`, so its HOST_DATA is the one
function of what is launched, the same as for ``jobruntime submit``'s pods:

- commands and image paths through the one mapping table (:mod:`jobruntime.dev.image`);
- every volume a directory of this pod's own (:class:`PodVolumes`): each ``emptyDir``
  a fresh 0700 directory under ``/dev/shm``, each Secret volume such a directory with
  the Secret's keys as files of the volume's mode; paths in arguments and variables
  under a mount path are rewritten to the volume's directory, and measured back at
  the mount path (``Mount``), so every pod of a role has the same HOST_DATA;
- literal variables as given, ``secretKeyRef`` variables from the runner's local
  Secrets (measured by reference, never by value);
- development mode (``JOBRUNTIME_DEV=1``) with the anchors it allows as its variables:
  what the image pins in ``/etc/jobruntime`` and ``/opt/jobruntime/jobs`` (trust root,
  control-plane URL, the job module's file) and the emulated TEE; each program gets
  the ones it reads and nothing else;
- the kubelet's part: each container's termination-message file
  (``/dev/termination-log``, given as ``$JOB_TERMINATION_LOG``), ``TMPDIR`` on the
  pod's ``/tmp`` volume, and for Spark's container ``SPARK_LOCAL_DIRS`` on its
  ``spark-local-dir-*`` volumes, as Spark on Kubernetes sets it.

Spark's own container (no command in the template: Spark fills it in) is what the
:class:`SparkSide` says: ``spark-submit`` of the driver entry in the driver pod, a
standalone Worker in an executor pod.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from jobruntime.dev.errors import PodRunnerError, SecretMissingError, UnmappedPathError
from jobruntime.dev.image import DevImage
from jobruntime.dev.localpod import LocalPod
from jobruntime.dev.manifest import Container, PodTemplate, Volume
from jobruntime.k8s import layout
from jobruntime.spec.models import PodRole
from jobruntime.verification.pinned import DEV_ENV
from jobruntime.workload.pod import ContainerLaunch, Mount, SecretEnv

TERMINATION_PATH = "/dev/termination-log"
TERMINATION_VOLUME = "(termination-message)"
"""Not a volume of the pod: the file the kubelet mounts at ``terminationMessagePath``."""
TERMINATION_ENV = "JOB_TERMINATION_LOG"
LOCAL_DIR_PREFIX = "spark-local-dir-"

Kind = Literal["init", "sidecar", "main"]
Secrets = Mapping[tuple[str, str], str]
"""The runner's "Kubernetes Secrets": ``(secret name, key)`` → value."""


@dataclass(frozen=True)
class Anchors:
    """What the image pins, given to development mode: the same for every pod of a run."""

    control_plane_url: str
    emulated_tee_dir: Path
    module: Path
    """The job module's file (``/opt/jobruntime/jobs/<name>.py`` mapped)."""
    trust_root: Path


# Which anchors each of the image's programs reads (flags' variables, development mode).
_CONTROL_PLANE = ("JOB_TRUST_ROOT", "JOB_CONTROL_PLANE_URL", "JOB_TEE", "JOB_EMULATED_TEE_DIR")
PROGRAM_ANCHORS: dict[str, tuple[str, ...]] = {
    "job-verifier": (*_CONTROL_PLANE, "JOB_MODULE_PATH"),
    "jobruntime-key-agent": _CONTROL_PLANE,
    "jobruntime-heartbeat": _CONTROL_PLANE,
}
SPARK_ANCHORS: dict[PodRole, tuple[str, ...]] = {
    "driver": ("JOB_TRUST_ROOT", "JOB_MODULE_PATH"),  # the driver entry re-verifies
    "executor": (),
}


def anchor_env(anchors: Anchors, names: Sequence[str]) -> dict[str, str]:
    values = {
        "JOB_TRUST_ROOT": str(anchors.trust_root),
        "JOB_CONTROL_PLANE_URL": anchors.control_plane_url,
        "JOB_TEE": "emulated",
        "JOB_EMULATED_TEE_DIR": str(anchors.emulated_tee_dir),
        "JOB_MODULE_PATH": str(anchors.module),
    }
    return {DEV_ENV: "1", **{n: values[n] for n in names}}


def trusted_files(anchors: Anchors, names: Sequence[str]) -> tuple[Path, ...]:
    """The files behind the anchors a container reads: measured into HOST_DATA."""
    files = []
    if "JOB_TRUST_ROOT" in names:
        files.append(anchors.trust_root)
    if "JOB_MODULE_PATH" in names:
        files.append(anchors.module)
    return tuple(files)


SOCKET_PATH_MAX = 107
"""Bytes of a Unix socket's path (``sun_path``, less its terminating NUL)."""


@dataclass(frozen=True)
class PodVolumes:
    """Where one pod's volumes and termination messages are on this machine.

    Short names (``pod-XXXX/v/<volume>``): a key agent's socket lies in a volume, and a
    socket's path may not be longer than 107 bytes.
    """

    root: Path

    def source(self, volume: str) -> Path:
        return self.root / "v" / volume

    def termination(self, container: str) -> Path:
        return self.root / "t" / container

    @classmethod
    def create(
        cls, work_root: Path, name: str, template: PodTemplate, secrets: Secrets
    ) -> PodVolumes:
        """Fresh 0700 directories for the pod; removed whole if any of it fails."""
        root = Path(tempfile.mkdtemp(prefix="pod-", dir=work_root))
        made = cls(root)
        try:
            (root / "pod").write_text(name + "\n")  # which pod this is, for a reader of /dev/shm
            for sub in ("v", "t"):
                (root / sub).mkdir(mode=0o700)
            for v in template.volumes:
                made._make(v, secrets)
            for c in (*template.init, *template.containers):
                made.termination(c.name).touch(mode=0o600)
        except BaseException:
            made.remove()
            raise
        return made

    def _make(self, volume: Volume, secrets: Secrets) -> None:
        where = self.source(volume.name)
        where.mkdir(mode=0o700)
        for item in volume.items:
            value = secrets.get((item.secret, item.key))
            if value is None:
                raise SecretMissingError(
                    f"volume {volume.name} needs key {item.key} of Secret {item.secret}"
                )
            target = where / item.path
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
            target.chmod(volume.mode)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class SparkSide(Protocol):
    """What stands in for Spark's container locally: its command, environment, files."""

    def command(self, role: PodRole, volumes: PodVolumes, template: PodTemplate) -> list[str]: ...

    def environment(self, role: PodRole) -> dict[str, str]: ...

    def files(self, role: PodRole) -> tuple[Path, ...]: ...


@dataclass(frozen=True)
class LocalContainer:
    """One container as launched, with what the kubelet needs to run it."""

    launch: ContainerLaunch
    kind: Kind
    probe: tuple[str, ...] | None
    probe_period: float
    probe_failures: int
    cwd: Path | None


@dataclass(frozen=True)
class LocalPodPlan:
    """One pod of the run, ready to start: its volumes and its containers in order."""

    name: str
    role: PodRole
    volumes: PodVolumes
    containers: tuple[LocalContainer, ...]

    @property
    def pod(self) -> LocalPod:
        return LocalPod.of([c.launch for c in self.containers])


@dataclass(frozen=True)
class PodBuilder:
    """Builds a role's local pod from its template; the same for every pod of the role."""

    image: DevImage
    anchors: Anchors
    spark: SparkSide
    secrets: Secrets

    def plan(self, name: str, template: PodTemplate, volumes: PodVolumes) -> LocalPodPlan:
        containers = [
            self._container(c, "sidecar" if c.sidecar else "init", template, volumes)
            for c in template.init
        ]
        containers += [self._container(c, "main", template, volumes) for c in template.containers]
        return LocalPodPlan(name, template.role, volumes, tuple(containers))

    def _container(
        self, c: Container, kind: Kind, template: PodTemplate, volumes: PodVolumes
    ) -> LocalContainer:
        mounts = (
            *(
                Mount(m.path, m.volume, volumes.source(template.volume(m.volume).name), m.read_only)
                for m in c.mounts
            ),
            Mount(TERMINATION_PATH, TERMINATION_VOLUME, volumes.termination(c.name)),
        )
        local = _Paths(self.image, mounts)
        env = {e.name: local.value(e.value) for e in c.env if e.value is not None}
        env[TERMINATION_ENV] = str(volumes.termination(c.name))
        tmp = local.mounted(layout.TMP_DIR)
        if tmp is not None:
            env["TMPDIR"] = str(tmp)
        cwd = None
        if c.command:  # one of the image's programs
            program = self.image.program(c.command[0])
            argv = [str(program), *(local.value(a) for a in (*c.command[1:], *c.args))]
            names = PROGRAM_ANCHORS.get(program.name, ())
            files = trusted_files(self.anchors, names)
        else:  # Spark's container: Spark fills in its command; here, the runner's Spark
            if c.args:
                raise PodRunnerError(f"{c.name}: Spark's container takes no arguments here")
            argv = self.spark.command(template.role, volumes, template)
            names = SPARK_ANCHORS[template.role]
            files = (*trusted_files(self.anchors, names), *self.spark.files(template.role))
            env.update(self.spark.environment(template.role))
            local_dirs = [str(m.source) for m in mounts if m.volume.startswith(LOCAL_DIR_PREFIX)]
            if local_dirs:  # as Spark on Kubernetes sets it from spark-local-dir-* mounts
                env["SPARK_LOCAL_DIRS"] = ",".join(local_dirs)
            cwd = local.mounted(layout.WORK_DIR)
        env.update(anchor_env(self.anchors, names))
        probe = _startup_probe(c, self.image, local)
        return LocalContainer(
            launch=ContainerLaunch(c.name, tuple(argv), env, files, mounts, self._secret_env(c)),
            kind=kind,
            probe=probe,
            probe_period=c.startup_probe.period if c.startup_probe else 0.0,
            probe_failures=c.startup_probe.failures if c.startup_probe else 0,
            cwd=cwd,
        )

    def _secret_env(self, c: Container) -> dict[str, SecretEnv]:
        """``secretKeyRef`` variables; a key not given stops the pod (CreateContainerConfig)."""
        found = {}
        for e in c.env:
            if e.secret is None:
                continue
            value = self.secrets.get(e.secret)
            if value is None:
                raise SecretMissingError(
                    f"{c.name}: ${e.name} needs key {e.secret[1]} of Secret {e.secret[0]}"
                )
            found[e.name] = SecretEnv("/".join(e.secret), value)
        return found


def _startup_probe(c: Container, image: DevImage, local: _Paths) -> tuple[str, ...] | None:
    """The probe's command here; a socket it tests must fit a Unix socket's path."""
    probe = c.startup_probe
    if probe is None:
        return None
    command = (str(image.path(probe.command[0])), *map(local.value, probe.command[1:]))
    if "-S" in command[1:-1]:
        socket = command[command.index("-S") + 1]
        if len(socket.encode()) > SOCKET_PATH_MAX:
            raise PodRunnerError(
                f"{c.name}: its socket would be {socket}, longer than {SOCKET_PATH_MAX} bytes: "
                "use a shorter work root"
            )
    return command


@dataclass(frozen=True)
class _Paths:
    """A container's paths as its process sees them here: mounts first, then the image."""

    image: DevImage
    mounts: tuple[Mount, ...]

    def mounted(self, path: str) -> Path | None:
        """The local path of a path under one of the container's mounts, if it is."""
        under = [m for m in self.mounts if path == m.path or path.startswith(m.path + "/")]
        best = max(under, key=lambda m: len(m.path), default=None)
        if best is None:
            return None
        rest = PurePosixPath(path).relative_to(best.path)
        return best.source if str(rest) == "." else best.source / rest

    def value(self, value: str) -> str:
        """An argument or a variable: a path is mapped, anything else is kept."""
        if not value.startswith("/"):
            return value
        found = self.mounted(value)
        if found is not None:
            return str(found)
        mapped = self.image.find(value)
        if mapped is None:
            raise UnmappedPathError(
                f"{value} is neither under one of the container's mounts nor in the image's "
                "mapping table"
            )
        return str(mapped)
