"""The audit log rolled back: a shorter, genuinely signed log served with its own old checkpoint.

In process, on the emulator's real log and the product's verifier
(``jobruntime.controlplane.audit.verify_log``); the CLI versions are pointer rows.
"""

from __future__ import annotations

import pytest

from jobruntime.controlplane.audit import verify_checkpoint, verify_log
from jobruntime.errors import AuditChainError
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import utcnow
from tests.conftest import Runs
from tests.sessions import TestPod


@pytest.mark.attack(
    id="audit-rolled-back-with-its-old-checkpoint",
    threat="the log served as it was earlier (entries since then gone) together with the "
    "genuine checkpoint signed at that earlier time, so log and checkpoint agree",
    adversary="operator of the control plane's database or its backups; a caching proxy",
    mechanism="the auditor keeps the newest checkpoint it verified; a log must extend it",
)
def test_an_older_log_with_its_own_checkpoint_fails_against_a_newer_one(runs: Runs) -> None:
    root = TrustRoot.load(runs.emu.trust_root)
    with runs.emu.client("operator") as c:
        old = c.audit()
    claimed = runs.approved()
    assert TestPod(runs.emu, claimed).claim().status_code == 200
    with runs.emu.client("operator") as c:
        new = c.audit()
    saved = verify_log(new.entries, new.checkpoint, root, utcnow())
    # The old answer is self-consistent: it verifies alone ...
    assert verify_log(old.entries, old.checkpoint, root, utcnow()).count == len(old.entries)
    # ... but not against the checkpoint the auditor saved since.
    with pytest.raises(AuditChainError) as info:
        verify_log(old.entries, old.checkpoint, root, utcnow(), earlier=saved)
    assert info.value.code == "audit.chain"
    assert "rolled back" in info.value.message
    # The newer checkpoint does not name the older log either.
    with pytest.raises(AuditChainError):
        verify_log(old.entries, new.checkpoint, root, utcnow())
    assert verify_checkpoint(new.checkpoint, root, utcnow()).count == len(new.entries)
