"""Process groups: check liveness, stop a whole group (``process.ManagedProcess`` starts them).

Each daemon is started with ``start_new_session``, so its pid is also its process
group id, and the executors and Python workers a Worker starts inherit that group:
stopping the group stops everything the daemon started, even if the daemon itself
dies first. Pids are checked against ``/proc/<pid>/cmdline`` before any signal, so a
pid reused by an unrelated process after a crash is never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path


def free_port() -> int:
    """A port the kernel just handed out on loopback (tiny race, fine locally)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our exited child, so it does not linger as a zombie."""
    with suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def cmdline(pid: int) -> list[str] | None:
    """The arguments of a live, non-zombie process, or None."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return None
    return raw.decode(errors="replace").split("\0")


def is_ours(pid: int, marker: str) -> bool:
    """``pid`` is alive and runs a Spark daemon whose arguments contain ``marker``."""
    args = cmdline(pid)
    return args is not None and marker in args and any("org.apache.spark" in a for a in args)


def group_members(pgid: int) -> list[int]:
    """The running (non-zombie) processes of group ``pgid``."""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


def spark_group(pgid: int) -> bool:
    """Group ``pgid`` still runs something of Spark's (a daemon died, its executors live)."""
    return any("spark" in " ".join(args) for args in map(cmdline, group_members(pgid)) if args)


def stop_groups(pgids: Iterable[int], grace: float = 10.0) -> None:
    """SIGTERM each group, wait up to ``grace`` seconds for all, then SIGKILL the rest."""
    pending = list(pgids)
    for pgid in pending:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = [g for g in pending if group_members(g)]
        time.sleep(0.1)
    for pgid in pending:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        pending = [g for g in pending if group_members(g)]
        time.sleep(0.05)


def log_tail(log: Path, lines: int = 12) -> str:
    """The last lines of a daemon log, joined for a one-line error message."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return f"{log}: " + " | ".join(tail) if tail else f"{log} is empty"
