"""The agent's listening socket: a safe directory, no stale file, mode 0600 from birth.

The socket file is created by ``bind`` with the process umask, so the umask is
narrowed around the call: there is no moment at which the socket is reachable by
other users and ``chmod`` has not yet run. ``umask`` is process-wide, which is why
the agent binds before it starts any thread of its own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from jobruntime.keyagent.errors import SocketPathError
from jobruntime.keyagent.memfs import require_memory_fs

MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
BACKLOG = 64

FileId = tuple[int, int]  # (st_dev, st_ino): which file we bound, to remove only that one


def prepare_socket_path(path: Path, *, memory_fs: bool) -> None:
    """Refuse a socket path the agent could not listen on, before anything else is done:
    the agent attests (one session per pod) only once it knows it can serve."""
    if len(os.fsencode(path)) > MAX_PATH:
        raise SocketPathError(f"socket path {path} is longer than {MAX_PATH} bytes")
    _prepare_dir(path.parent, memory_fs=memory_fs)


def open_listener(path: Path, *, memory_fs: bool) -> tuple[socket.socket, FileId]:
    prepare_socket_path(path, memory_fs=memory_fs)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
        st = os.lstat(path)
    except OSError as exc:
        sock.close()
        raise SocketPathError(f"cannot listen on {path}: {exc.strerror}") from None
    return sock, (st.st_dev, st.st_ino)


def remove_if_ours(path: Path, ours: FileId) -> None:
    """Unlink the socket file unless another agent has since replaced it."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == ours:
            path.unlink()


def _prepare_dir(directory: Path, *, memory_fs: bool) -> None:
    if not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)  # mkdir's mode is narrowed by the umask, not set
        except OSError as exc:
            raise SocketPathError(f"cannot create {directory}: {exc.strerror}") from None
    if memory_fs:
        require_memory_fs(directory)


def _remove_stale(path: Path) -> None:
    """A socket file nobody listens on is left by a killed agent; anything else is kept."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SocketPathError(f"cannot inspect {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        raise SocketPathError(f"cannot probe {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise SocketPathError(f"another process is listening on {path}")
