"""One definition of a pod's HOST_DATA: a digest over every container as launched.

In ``pod`` isolation (Confidential Containers) the host sets the report's HOST_DATA
at launch to the digest of the pod's policy, which pins each container's command,
arguments, environment and mounts. The emulated TEE needs the same kind of value
from whoever launches a local pod; this is it:

    SHA-256( RFC 8785 {"containers": [{"name", "argv", "env", "files": {path: sha256}}]} )

with containers in launch order and ``files`` the files a container is given and
trusts (the job module, the trust root). Change one argument, one variable or one
byte of one of those files and the pod has another HOST_DATA, and gets no key.

Two optional parts, measured only when a container has them (so a pod without them
keeps the value it always had):

- ``mounts``: a volume as the container sees it. Without mount namespaces a local
  process sees the directory its launcher made for the volume, a different one for
  every pod; a policy pins the mount (where, which volume, read-only), not the host
  directory behind it. So the measured argv, environment and file names show each
  volume at its mount path, and ``"mounts"`` lists the mounts: two pods of one role,
  each with its own volumes, measure the same, as two replicas of one pod template do.
- ``secret_env``: a variable whose value comes from a secret (a storage connection
  string). The process gets the value; the measurement names the secret it comes
  from, never the value, as a policy allows a secret's variable without pinning it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobruntime.errors import ConfigError
from jobruntime.spec.codec import canonical


@dataclass(frozen=True)
class Mount:
    """A volume in a container: where the container sees it, and where it really is."""

    path: str
    """The mount path in the pod spec (``/run/jobruntime``): what is measured."""
    volume: str
    """The volume's name in the pod spec: measured."""
    source: Path
    """The directory (or file) the launcher made for this pod: not measured."""
    read_only: bool = False


@dataclass(frozen=True)
class SecretEnv:
    """A variable from a secret: the value reaches the process, the reference is measured."""

    ref: str
    """``secret-name/key``."""
    value: str = field(repr=False)


@dataclass(frozen=True)
class ContainerLaunch:
    """One container of a pod: what runs, with what environment, trusting which files."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    mounts: tuple[Mount, ...] = ()
    secret_env: Mapping[str, SecretEnv] = field(default_factory=dict)

    def measured(self) -> dict[str, object]:
        seen = _as_mounted(self.mounts)
        doc: dict[str, object] = {
            "name": self.name,
            "argv": [seen(a) for a in self.argv],
            "env": {k: seen(v) for k, v in sorted(self.env.items())},
            "files": {seen(str(p)): _file_digest(p) for p in sorted(self.files)},
        }
        if self.mounts:
            doc["mounts"] = [
                {"path": m.path, "volume": m.volume, "read_only": m.read_only}
                for m in sorted(self.mounts, key=lambda m: m.path)
            ]
        if self.secret_env:
            doc["secret_env"] = {k: s.ref for k, s in sorted(self.secret_env.items())}
        return doc

    def environment(self) -> dict[str, str]:
        """The container's own variables as its process gets them (secrets' values too)."""
        return {**self.env, **{k: s.value for k, s in self.secret_env.items()}}


def host_data(containers: Sequence[ContainerLaunch]) -> bytes:
    """The 32-byte HOST_DATA of a pod made of these containers."""
    names = [c.name for c in containers]
    if not containers or len(set(names)) != len(names):
        raise ConfigError("a pod has one or more containers with distinct names")
    return hashlib.sha256(canonical({"containers": [c.measured() for c in containers]})).digest()


def _as_mounted(mounts: Sequence[Mount]) -> Callable[[str], str]:
    """Rewrites each mount's source to its mount path, where it stands as a whole path.

    One pass, longest source first, so a volume inside another's directory wins and a
    rewritten path is never rewritten again; a source matches only up to a path
    boundary (``/x/run`` is not part of ``/x/run2``).
    """
    if not mounts:
        return lambda value: value
    paths = {str(m.source): m.path for m in mounts}
    sources = "|".join(re.escape(s) for s in sorted(paths, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w./-])(" + sources + r")(?=[/:,;=\s]|$)")
    return lambda value: pattern.sub(lambda m: paths[m.group(1)], value)


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"cannot measure {path}: {exc.strerror}") from None
