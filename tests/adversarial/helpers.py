"""Assertions every attack shares: the exact refusal, and that nothing happened.

Built on the shared fixtures (tests/conftest.py ``Runs``, tests/sessions.py, tests/tamper.py);
these only read what a test created (its own run ids, directories and agents).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.errors import JobRuntimeError
from jobruntime.verification.bundle import BUNDLE_NAME
from tests.conftest import Runs
from tests.sessions import error_code
from tests.tamper import TamperingClient
from verifier.run import VerifierConfig, verify_run


def refused(resp: requests.Response, status: int, code: str) -> None:
    """The control plane answered with exactly this status and error code."""
    assert (resp.status_code, error_code(resp)) == (status, code), resp.text


def audited(emu: EmulatorProcess, run_id: str | None, event: str) -> list[dict[str, Any]]:
    """The details of this run's audit entries of ``event``, oldest first."""
    with emu.client("operator") as c:
        return [e.details for e in c.audit().entries if e.run_id == run_id and e.event == event]


def reasons(emu: EmulatorProcess, run_id: str | None, event: str) -> list[str]:
    return [str(d["reason"]) for d in audited(emu, run_id, event)]


def state(emu: EmulatorProcess, run_id: str) -> str:
    with emu.client("operator") as c:
        return c.status(run_id).state.value


def nothing_released(emu: EmulatorProcess, run_id: str) -> None:
    """No dataset key, no Spark secret, no published version for this run."""
    for event in ("kms.released", "kms.spark_secret_released", "dataset.published"):
        assert audited(emu, run_id, event) == [], event


def tampering(runs: Runs, **kw: Any) -> TamperingClient:
    """The verifier's client, with what the emulator answered altered on the way."""
    return TamperingClient(runs.emu.url, runs.emu.token("verifier"), retry_for=3.0, **kw)


def verifier_refuses(code: str, config: VerifierConfig, **kw: Any) -> JobRuntimeError:
    """The verifier stops with ``code``, writes no bundle and leaves its directory empty."""
    with pytest.raises(JobRuntimeError) as info:
        verify_run(config, **kw)
    assert info.value.code == code, info.value.one_line()
    assert not (config.output_dir / BUNDLE_NAME).exists()
    assert not config.output_dir.exists() or not any(config.output_dir.iterdir())
    return info.value


def unclaimed(emu: EmulatorProcess, run_id: str) -> None:
    """The run was not claimed and nothing was released for it."""
    assert audited(emu, run_id, "run.claimed") == []
    nothing_released(emu, run_id)
