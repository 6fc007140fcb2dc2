"""Every command fails the same way: one line, its exit code, no traceback, one debug switch."""

from __future__ import annotations

import pytest

from jobruntime.entrypoint import run_main
from jobruntime.errors import ConfigError


def boom() -> int:
    raise ValueError("customer C-1042 did not parse")  # a message that quotes data


def refused() -> int:
    raise ConfigError("missing --run-id")


def test_expected_and_unexpected_failures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    assert run_main("prog", refused, on_failure=lines.append) == 2
    assert run_main("prog", boom, on_failure=lines.append) == 70
    err = capsys.readouterr().err
    assert err == "prog: config.invalid: missing --run-id\nprog: internal: unexpected ValueError\n"
    assert lines == ["config.invalid: missing --run-id", "internal: unexpected ValueError"]
    assert "C-1042" not in err
    # The debug switch is refused outside development mode, before the command runs...
    ran: list[int] = []

    def command() -> int:
        ran.append(1)
        return 0

    monkeypatch.setenv("JOBRUNTIME_DEBUG", "1")
    monkeypatch.delenv("JOBRUNTIME_DEV", raising=False)
    assert run_main("prog", command) == 2
    assert ran == []
    assert capsys.readouterr().err.startswith("prog: config.debug_refused: JOBRUNTIME_DEBUG")
    # ...and in development mode it re-raises, for a developer's own data.
    monkeypatch.setenv("JOBRUNTIME_DEV", "1")
    with pytest.raises(ValueError, match="C-1042"):
        run_main("prog", boom)
