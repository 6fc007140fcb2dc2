"""The data owner's ``jobruntime kms`` commands against the real emulator."""

from __future__ import annotations

import secrets
import subprocess
import sys

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.dev.emulator import EmulatorProcess


def jr(emu: EmulatorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", "kms", *args, "--emulator-state", str(emu.state)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_owner_creates_a_key_and_the_operator_reads_its_policy(emulator: EmulatorProcess) -> None:
    key_id = f"org-b/sales-{secrets.token_hex(4)}"
    made = jr(
        emulator,
        "create-key",
        key_id,
        "--measurement",
        EMULATED_MEASUREMENT.hex(),
        "--min-tcb",
        "snp=3",
        "--allow-emulated",
    )
    assert made.returncode == 0, made.stderr
    assert f"created {key_id} for org-b" in made.stdout
    shown = jr(emulator, "show", key_id)
    assert shown.returncode == 0, shown.stderr
    assert '"snp": 3' in shown.stdout
    assert "material" not in shown.stdout


def test_a_bad_policy_is_a_one_line_schema_error(emulator: EmulatorProcess) -> None:
    bad = jr(emulator, "create-key", "org-a/x", "--measurement", "not-hex")
    assert bad.returncode == 10
    assert bad.stderr.startswith("jobruntime: spec.schema: release policy")
    assert "Traceback" not in bad.stderr
