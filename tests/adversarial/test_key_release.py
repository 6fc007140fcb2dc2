"""Key release and the key agent under attack: master keys asked for, unsafe paths.

The KMS side runs against the real emulator; the agent side against real agents on
sockets in a fresh /dev/shm directory of the test's own (tests/keyagent/conftest.py).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.errors import KeyAgentError
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource
from jobruntime.keyrelease.jwe import EphemeralKey
from tests.adversarial.helpers import audited, refused
from tests.conftest import DEV_POLICY, Runs
from tests.keyagent.conftest import AgentFactory, CountingSource
from tests.sessions import TestPod, api

KEY = b"K" * 32


@pytest.mark.attack(
    id="master-key-request-to-the-kms",
    threat="a pod (or the operator) asks the KMS for a dataset's master key outright, "
    "through the owners' own-key route",
    adversary="whoever controls the namespace (the pods' bearer token); the operator",
    mechanism="only the key's owning organisation may use owner access; pods get keys only "
    "wrapped to an attested key agent's ephemeral key",
)
def test_no_master_key_for_a_pod_or_the_operator(runs: Runs) -> None:
    key_id = f"org-a/guarded-{secrets.token_hex(4)}"
    with runs.emu.client("owner:org-a") as c:
        c.create_key(key_id, DEV_POLICY)
    body = {"public_jwk": EphemeralKey().public_jwk}
    for principal in ("verifier", "operator", "submitter"):
        resp = api(runs.emu, principal, "POST", f"/kms/keys/{key_id}/owner-access", body)
        refused(resp, 403, "auth.forbidden")
        assert "jwe" not in resp.text
    with runs.emu.client("operator") as c:
        accessed = [e for e in c.audit().entries if e.event == "kms.owner_access"]
    assert [e for e in accessed if e.details.get("key_id") == key_id] == []


@pytest.mark.attack(
    id="release-to-another-runs-session",
    threat="a key-agent session of one run asks for a dataset only another run names",
    adversary="an approved job of another run; whoever controls the namespace",
    mechanism="the KMS releases only datasets of the session's own run's signed spec",
)
def test_a_session_of_one_run_gets_no_key_of_another_runs_dataset(runs: Runs) -> None:
    payroll = f"org-a/payroll-{secrets.token_hex(4)}"
    with runs.emu.client("owner:org-a") as c:
        c.create_key(payroll, DEV_POLICY)
    theirs = runs.datasets()
    extra = {"name": "payroll", "uri": "file:///data/payroll", "key_id": payroll, "owner": "org-a"}
    victim = runs.approved(inputs=[*theirs["inputs"], extra], outputs=theirs["outputs"])
    mine = runs.approved(**runs.datasets())
    pod = TestPod(runs.emu, mine)
    assert pod.claim().status_code == 200
    refused(pod.release("payroll"), 403, "kms.dataset_not_in_spec")
    assert [d["reason"] for d in audited(runs.emu, mine, "kms.release_denied")] == [
        "kms.dataset_not_in_spec"
    ]
    assert audited(runs.emu, mine, "kms.released") == []
    assert audited(runs.emu, victim, "kms.released") == []


@pytest.mark.attack(
    id="agent-socket-dir-symlinked-to-disk",
    threat="the agent's socket directory on the memory volume is a symlink to a disk "
    "directory, so the socket (and the bundle beside it) lands where the host can image it",
    adversary="whoever writes the pod's volumes (mounts, init containers)",
    mechanism="the memory-filesystem check resolves the real path before it looks up the mount",
)
def test_a_socket_directory_symlinked_to_disk_is_refused(shm_dir: Path, tmp_path: Path) -> None:
    disk = tmp_path / "on-disk"
    disk.mkdir()
    link = shm_dir / "run"
    link.symlink_to(disk)
    with pytest.raises(KeyAgentError) as info:
        KeyAgentServer(link / "agent.sock", StaticKeySource({"sales": KEY}))
    assert info.value.code == "keyagent.unsafe_dir"
    assert list(disk.iterdir()) == []


@pytest.mark.attack(
    id="agent-socket-path-planted",
    threat="a symlink or file planted at the socket path, so the agent replaces (or listens "
    "through) something that is not its stale socket",
    adversary="whoever writes the pod's volumes",
    mechanism="the path is inspected without following links; only a socket nobody listens "
    "on is replaced",
)
def test_a_planted_symlink_or_file_at_the_socket_path_is_refused(
    shm_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    planted = shm_dir / "agent.sock"
    planted.symlink_to(target)
    with pytest.raises(KeyAgentError) as info:
        KeyAgentServer(planted, StaticKeySource({"sales": KEY}))
    assert info.value.code == "keyagent.socket_path"
    assert planted.is_symlink() and target.read_bytes() == b"keep me"
    assert sorted(p.name for p in shm_dir.iterdir()) == ["agent.sock"]


@pytest.mark.attack(
    id="agent-wrong-dataset-kek",
    threat="a KEK wrapped under one dataset's master key is sent to be unwrapped as another "
    "dataset's (to read a file of a dataset the reader may not read, through one it may)",
    adversary="an approved job module (can reach the agent's socket)",
    mechanism="wrapped keys are AES-GCM under the dataset's master key with the key id as "
    "associated data",
)
def test_a_kek_of_another_dataset_does_not_unwrap(agent: AgentFactory) -> None:
    source = CountingSource({"sales": KEY, "other": os.urandom(32)})
    client = KeyAgentClient(agent(source).socket_path)
    wrapped = client.wrap("sales", "org-a/sales", b"k" * 16)
    with pytest.raises(KeyAgentError) as info:
        client.unwrap("other", "org-a/other", wrapped)
    assert info.value.remote_code == "keyagent.unwrap_failed"
    with pytest.raises(KeyAgentError) as again:
        client.unwrap("sales", "org-a/other", wrapped)  # the right key under another id
    assert again.value.remote_code == "keyagent.unwrap_failed"
