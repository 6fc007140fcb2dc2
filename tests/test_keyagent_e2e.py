"""End to end: verifier attests, the key agent attests once and releases, a reader reads.

Everything is real: the emulator and its KMS over HTTP, job-verifier and the key
agent as processes, the socket in /dev/shm; only the TEE is the emulated chip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.process import KeyAgentProcess
from tests.conftest import Runs
from verifier.run import verify_run


def events(runs: Runs, run_id: str, name: str) -> list[dict[str, object]]:
    with runs.emu.client("operator") as c:
        return [e.details for e in c.audit().entries if e.run_id == run_id and e.event == name]


def test_agent_serves_the_specs_keys_and_refuses_a_third(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.keyed()
    bundle = verify_run(runs.config(run_id)).parent
    with KeyAgentProcess(runs.emu, bundle) as agent:
        client = KeyAgentClient(agent.socket)
        a, b = client.get_key("customers_a"), client.get_key("customers_b")
        assert len(a) == len(b) == 32
        assert a != b
        assert client.get_key("customers_a") == a  # cached: no second release
        with pytest.raises(JobRuntimeError) as info:
            client.get_key("payroll")
        assert info.value.code == "keyagent.not_in_spec"
        assert sorted(client.health()["cached"]) == ["customers_a", "customers_b"]
    attested = events(runs, run_id, "run.attested")
    assert [e["purpose"] for e in attested] == ["verifier", "key-agent"]
    assert sorted(e["dataset"] for e in events(runs, run_id, "kms.released")) == [
        "customers_a",
        "customers_b",
    ]


def test_agent_of_a_cancelled_run_gets_no_keys(runs: Runs) -> None:
    run_id = runs.keyed()
    bundle = verify_run(runs.config(run_id)).parent
    with KeyAgentProcess(runs.emu, bundle) as agent:
        with runs.emu.client("operator") as c:
            c.cancel(run_id, "owner withdrew")
        with pytest.raises(JobRuntimeError) as info:
            KeyAgentClient(agent.socket).get_key("customers_a")
        assert "kms.run_cancelled" in info.value.message
    assert events(runs, run_id, "kms.release_denied")[0]["reason"] == "kms.run_cancelled"
