"""Workload identity with real pods: HOST_DATA measured by the launcher, checked by the KMS.

Every process here is real (the emulator over HTTP, job-verifier, the key agent and the
heartbeat sidecar as the pod's containers, sockets on tmpfs); only the TEE is the
emulated chip, which takes HOST_DATA from the launcher as hardware takes it from the
host. The adversary controls the namespace: it can start the approved pods with one
thing changed, or write files into a pod's volume.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobruntime.dev import pods
from jobruntime.dev.localpod import LocalPod
from jobruntime.errors import JobRuntimeError
from jobruntime.job import driver
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.verification.bundle import BUNDLE_NAME
from jobruntime.workload.pod import ContainerLaunch
from tests.conftest import Runs
from tests.pods import PodRun, pod_run


def events(runs: Runs, run_id: str, name: str) -> list[dict[str, Any]]:
    with runs.emu.client("operator") as c:
        return [e.details for e in c.audit().entries if e.run_id == run_id and e.event == name]


def state(runs: Runs, run_id: str) -> str:
    with runs.emu.client("operator") as c:
        return c.status(run_id).state.value


def changed(pod: LocalPod, name: str, **change: Any) -> LocalPod:
    """The same pod with one container changed: the launcher measures it anew."""
    return LocalPod.of(
        [dataclasses.replace(c, **change) if c.name == name else c for c in pod.containers]
    )


def with_flag(c: ContainerLaunch, flag: str, value: str) -> tuple[str, ...]:
    argv = list(c.argv)
    argv[argv.index(flag) + 1] = value
    return tuple(argv)


def key_ids(runs: Runs, run_id: str) -> dict[str, str]:
    spec = runs.signed(run_id).spec
    return {d.name: d.key_id for d in (*spec.inputs, *spec.outputs)}


def test_approved_pods_attest_and_get_one_release_per_dataset_per_pod(
    runs: Runs, shm_dir: Path
) -> None:
    run = pod_run(runs, shm_dir)
    ids = key_ids(runs, run.run_id)
    pods.run_verifier(run.driver, run.plan, "driver")
    assert state(runs, run.run_id) == "claimed"
    with pods.key_agent(run.driver, run.plan, "driver") as socket:
        agent = KeyAgentClient(socket)
        for _ in range(3):  # many readers, one release
            assert len(agent.key_check("customers_a", ids["customers_a"])) == 64
        wrapped = agent.wrap("overlap", ids["overlap"], b"k" * 32)
        assert agent.unwrap("overlap", ids["overlap"], wrapped) == b"k" * 32
    # An executor pod: its own verifier joins the claimed run, its own agent attests.
    pods.run_verifier(run.executor, run.plan, "executor")
    with pods.key_agent(run.executor, run.plan, "executor") as socket:
        assert KeyAgentClient(socket).key_check("customers_a", ids["customers_a"])
    attested = events(runs, run.run_id, "run.attested")
    seen = {(e["role"], e["purpose"], e["host_data"]) for e in attested}
    assert seen == {
        ("driver", "verifier", run.driver.host_data.hex()),
        ("driver", "key-agent", run.driver.host_data.hex()),
        ("executor", "verifier", run.executor.host_data.hex()),
        ("executor", "key-agent", run.executor.host_data.hex()),
    }
    released = sorted((e["pod"], e["dataset"]) for e in events(runs, run.run_id, "kms.released"))
    assert len(released) == len(set(released)) == 3  # a, overlap (driver); a (executor)


CHANGES = {
    "key-agent env": ("key-agent", lambda c: {"env": {**c.env, "JOB_KEYAGENT_LOG_LEVEL": "DEBUG"}}),
    "verifier module path": ("job-verifier", "module"),
    "verifier bundle dir": ("job-verifier", "bundle"),
    "heartbeat trust root": ("heartbeat", "trust-root"),
}


def _change(run: PodRun, what: str, tmp: Path) -> LocalPod:
    name, how = CHANGES[what]
    c = run.driver.container(name)
    if callable(how):
        return changed(run.driver, name, **how(c))
    if how == "module":  # the same bytes at another path
        copy = tmp / "elsewhere.py"
        shutil.copy(run.plan.module, copy)
        return changed(run.driver, name, argv=with_flag(c, "--module", str(copy)), files=(copy,))
    if how == "bundle":
        return changed(run.driver, name, argv=with_flag(c, "--output-dir", str(tmp / "b")))
    copy = tmp / "root.json"
    shutil.copy(run.plan.trust_root, copy)
    return changed(run.driver, name, argv=with_flag(c, "--trust-root", str(copy)), files=(copy,))


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_a_pod_with_one_thing_changed_gets_another_host_data_and_nothing(
    runs: Runs, shm_dir: Path, tmp_path: Path, what: str
) -> None:
    run = pod_run(runs, shm_dir)
    forged = _change(run, what, tmp_path)
    assert forged.host_data != run.driver.host_data
    # The whole pod is measured: even its untouched verifier attests with the new value.
    with pytest.raises(JobRuntimeError) as info:
        pods.run_verifier(forged, run.plan, "driver")
    assert "attestation.host_data" in info.value.message
    assert state(runs, run.run_id) == "approved"  # nothing claimed
    denied = events(runs, run.run_id, "kms.attest_denied")
    assert [d["reason"] for d in denied] == ["attestation.host_data"]
    assert events(runs, run.run_id, "kms.released") == []


def test_a_changed_sidecar_beside_the_approved_verifier_gets_nothing(
    runs: Runs, shm_dir: Path
) -> None:
    """The approved pod claims; a key agent started with one variable changed, reading
    that pod's own bundle, is measured as another pod and refused."""
    run = pod_run(runs, shm_dir)
    pods.run_verifier(run.driver, run.plan, "driver")
    c = run.driver.container("key-agent")
    forged = changed(run.driver, "key-agent", env={**c.env, "JOB_KEYAGENT_LOG_LEVEL": "DEBUG"})
    with pytest.raises(JobRuntimeError) as info, pods.key_agent(forged, run.plan, "driver"):
        pass
    assert "attestation.host_data" in info.value.message
    assert events(runs, run.run_id, "kms.released") == []


def test_a_second_key_agent_of_the_same_pod_is_refused(runs: Runs, shm_dir: Path) -> None:
    run = pod_run(runs, shm_dir)
    pods.run_verifier(run.driver, run.plan, "driver")
    with pods.key_agent(run.driver, run.plan, "driver"):
        # The same container again (same HOST_DATA, same pod id from the bundle).
        second = run.driver.run("key-agent", capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert "kms.session_exists" in second.stderr
    assert "Traceback" not in second.stderr


def forge_module_pin(bundle: Path) -> None:
    """Rewrite the bundle's signed spec to pin another module, keeping the signature."""
    doc = json.loads((bundle / BUNDLE_NAME).read_text())
    spec = json.loads(base64.b64decode(doc["envelope"]["payload"]))
    spec["module"]["sha256"] = "ee" * 32
    doc["envelope"]["payload"] = base64.b64encode(json.dumps(spec).encode()).decode()
    (bundle / BUNDLE_NAME).write_text(json.dumps(doc))


def test_a_forged_bundle_pinning_another_module_is_refused_by_every_reader(
    runs: Runs, shm_dir: Path
) -> None:
    run = pod_run(runs, shm_dir)
    pods.run_verifier(run.driver, run.plan, "driver")
    bundle = run.plan.bundle_dir("driver")
    forge_module_pin(bundle)
    # The key agent re-verifies the bundle before it attests: no session, no key.
    agent = run.driver.run("key-agent", capture_output=True, text=True, timeout=60)
    assert agent.returncode == 11, agent.stderr
    assert "keyagent: signature.invalid" in agent.stderr
    # The driver re-verifies before it loads any module.
    env = run.driver.environment("driver")
    proc = subprocess.run(
        [sys.executable, driver.__file__], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 11, proc.stderr
    assert "jobruntime-driver: signature.invalid" in proc.stderr
    # The heartbeat sidecar too.
    hb = run.driver.run("heartbeat", capture_output=True, text=True, timeout=60)
    assert hb.returncode == 11, hb.stderr
    assert "heartbeat: signature.invalid" in hb.stderr
    assert [e["purpose"] for e in events(runs, run.run_id, "run.attested")] == ["verifier"]
    assert events(runs, run.run_id, "kms.released") == []


def test_a_genuine_bundle_of_another_run_gets_nothing(runs: Runs, shm_dir: Path) -> None:
    """Another approved run's real bundle in this pod: its spec names other pods."""
    mine = pod_run(runs, shm_dir / "mine")
    theirs = pod_run(runs, shm_dir / "theirs")
    pods.run_verifier(theirs.driver, theirs.plan, "driver")
    pods.run_verifier(mine.driver, mine.plan, "driver")
    shutil.copy(
        theirs.plan.bundle_dir("driver") / BUNDLE_NAME, mine.plan.bundle_dir("driver") / BUNDLE_NAME
    )
    agent = mine.driver.run("key-agent", capture_output=True, text=True, timeout=60)
    assert agent.returncode != 0
    assert "attestation.host_data" in agent.stderr
    for run in (mine, theirs):
        assert events(runs, run.run_id, "kms.released") == []
