"""SO_PEERCRED: a process of another uid is refused even when it can reach the socket."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from jobruntime.keyagent.client import KeyAgentClient
from tests.keyagent.conftest import AgentFactory, CountingSource

NOBODY = 65534

# Standard library only: the child runs as nobody, who may not read the project's venv.
CHILD = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"op": "key_check", "dataset": "sales", "key_id": "org-a/sales"}\\n')
except OSError:
    pass
print(s.makefile("rb").readline().decode().strip())  # one answer line, as the client reads
"""


def _python_for_others() -> str | None:
    """An interpreter that a user without access to root's home can still run."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        real = Path(os.path.realpath(candidate))
        if not real.is_file():
            continue
        dirs_ok = all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
        if dirs_ok and real.stat().st_mode & stat.S_IXOTH:
            return str(real)
    return None


def test_peer_with_another_uid_is_refused(
    agent: AgentFactory, shm_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as uid 65534")
    python = _python_for_others()
    if python is None:
        pytest.skip("no Python interpreter that uid 65534 may execute")
    caplog.set_level("INFO", logger="jobruntime.keyagent")
    source = CountingSource({"sales": b"k" * 32})
    server = agent(source)
    # Widen what file permissions allow, as a misconfigured volume (or a root peer in
    # another container, which ignores them) would: the credential check still holds.
    os.chmod(shm_dir, 0o711)  # noqa: S103 - on purpose, see above
    os.chmod(server.socket_path, 0o666)  # noqa: S103
    child = subprocess.run(
        [python, "-I", "-c", CHILD, str(server.socket_path)],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    answer = json.loads(child.stdout)
    assert answer["ok"] is False
    assert answer["code"] == "keyagent.peer_refused"
    assert "key" not in answer
    assert source.calls == []
    assert f"uid={NOBODY}" in caplog.text
    assert "refused peer pid=" in caplog.text
    # The agent keeps serving its own uid.
    assert KeyAgentClient(server.socket_path).key_check("sales", "org-a/sales")
