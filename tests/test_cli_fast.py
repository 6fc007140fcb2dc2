"""The CLI answers at once (issue 14, data scientists' part): ``--help`` and ``--version``
import no command module, and a loopback control plane that refuses the connection fails
at once, saying how to start it, instead of retrying for 30 s."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobruntime.cli import main as cli_main
from jobruntime.cli.common import refuse_if_not_listening
from jobruntime.errors import ControlPlaneNotRunningError

HEAVY = ("pydantic", "pyarrow", "pyspark", "cryptography", "rich", "fastapi", "jobruntime.cli.")


def jr(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_the_lazy_listing_is_what_the_modules_register() -> None:
    full = cli_main.parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    registered = {c.dest: c.help for c in sub._choices_actions}
    assert registered == {name: help_text for name, (_, help_text) in cli_main.COMMANDS.items()}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_command_module(flag: str) -> None:
    code = (
        "import sys\nfrom jobruntime.cli.main import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit:\n    pass\n"
        f"HEAVY = {HEAVY!r}\n"
        "heavy = [m for m in sys.modules if m.startswith(HEAVY) and m != 'jobruntime.cli.main']\n"
        "print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version() -> None:
    done = jr("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"jobruntime {cli_main.version()}"
    assert cli_main.version() != "unknown"


def test_a_command_still_gets_its_full_parser() -> None:
    done = jr("approve", "--help")
    assert done.returncode == 0 and "--owner" in done.stdout
    assert jr("nope").returncode == 2


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns


def test_a_stopped_local_control_plane_fails_at_once(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-real-token")
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    done = jr("runs", "list", "--url", url, "--token-file", str(token), timeout=20)
    elapsed = time.monotonic() - started
    assert done.returncode == 20, done.stderr
    assert "controlplane.not_running" in done.stderr
    assert "jobruntime emulator serve --state" in done.stderr and "make demo" in done.stderr
    assert elapsed < 20  # the client's retries alone would take 30 s


def test_only_loopback_refusals_are_short_cut() -> None:
    with pytest.raises(ControlPlaneNotRunningError, match="--state /s"):
        refuse_if_not_listening(f"http://localhost:{closed_port()}", "/s")
    refuse_if_not_listening("https://control-plane.invalid:1")  # remote: left to the client
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        refuse_if_not_listening(f"http://127.0.0.1:{server.getsockname()[1]}")
