"""The run's Spark secret as a file for Spark, written by the attested key agent.

Spark on Kubernetes reads its authentication secret from
``spark.authenticate.secret.{driver,executor}.file`` (see spark-conf/kubernetes.conf)
instead of generating one and putting it in every executor pod's environment. The
agent writes the secret the KMS released to it there: 0400, on the pod's memory
volume, in a directory only this uid can enter, never over another file or through a
symlink. A restarted agent finds the same run's secret already there and keeps it.
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
from pathlib import Path

from jobruntime.keyagent.errors import UnsafeDirError
from jobruntime.keyagent.memfs import require_memory_fs

log = logging.getLogger("jobruntime.keyagent")


def write_spark_secret(path: Path, secret: bytes, *, memory_fs: bool) -> None:
    """Write ``secret`` to ``path`` for Spark, or refuse with ``keyagent.unsafe_dir``."""
    # 1. A directory of this uid that no one else can enter, on a memory filesystem.
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.lstat()
    except OSError as exc:
        raise UnsafeDirError(f"cannot use {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UnsafeDirError(f"{directory} must be a directory of this uid with mode 0700")
    if memory_fs:
        require_memory_fs(directory)
    # 2. A new file, never through a symlink; 0400 from birth.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    except FileExistsError:
        _keep_existing(path, secret)
        return
    except OSError as exc:
        raise UnsafeDirError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    log.info("wrote the run's Spark secret to %s", path)


def _keep_existing(path: Path, secret: bytes) -> None:
    """3. An existing file is kept only if it is ours, 0400, and holds this secret."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UnsafeDirError(f"{path} exists and cannot be checked: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        held = f.read(len(secret) + 1)
    if (
        not stat.S_ISREG(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) != 0o400
        or not hmac.compare_digest(held, secret)
    ):
        raise UnsafeDirError(f"{path} exists and is not this run's secret; refusing to use it")
