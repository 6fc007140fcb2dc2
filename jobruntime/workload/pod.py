"""One definition of a pod's HOST_DATA: a digest over every container as launched.

In ``pod`` isolation (Confidential Containers) the host sets the report's HOST_DATA
at launch to the digest of the pod's policy, which pins each container's command,
arguments, environment and mounts. The emulated TEE needs the same kind of value
from whoever launches a local pod; this is it:

    SHA-256( RFC 8785 {"containers": [{"name", "argv", "env", "files": {path: sha256}}]} )

with containers in launch order and ``files`` the files a container is given and
trusts (the job module, the trust root). Change one argument, one variable or one
byte of one of those files and the pod has another HOST_DATA, and gets no key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobruntime.errors import ConfigError
from jobruntime.spec.codec import canonical


@dataclass(frozen=True)
class ContainerLaunch:
    """One container of a pod: what runs, with what environment, trusting which files."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def measured(self) -> dict[str, object]:
        return {
            "name": self.name,
            "argv": list(self.argv),
            "env": dict(sorted(self.env.items())),
            "files": {str(p): _file_digest(p) for p in sorted(self.files)},
        }


def host_data(containers: Sequence[ContainerLaunch]) -> bytes:
    """The 32-byte HOST_DATA of a pod made of these containers."""
    names = [c.name for c in containers]
    if not containers or len(set(names)) != len(names):
        raise ConfigError("a pod has one or more containers with distinct names")
    return hashlib.sha256(canonical({"containers": [c.measured() for c in containers]})).digest()


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"cannot measure {path}: {exc.strerror}") from None
