"""Every numbered check of the job-verifier, each made to fail by tampered input.

The control plane is the real emulator over HTTP; hostile bytes come from
``tests.tamper``; trust roots are real files with real keys.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobruntime.attestation.providers.base import EvidenceProvider
from jobruntime.attestation.providers.emulated import (
    EMULATED_MEASUREMENT,
    EmulatedProvider,
    load_tee,
)
from jobruntime.controlplane.api import RunState
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.errors import JobRuntimeError
from jobruntime.keyrelease.binding import PodIdentity
from jobruntime.keyrelease.session import AttestedSession
from jobruntime.signing import envelope
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import Role, TrustedKey, TrustRoot
from jobruntime.spec.models import utcnow
from jobruntime.verification.bundle import BUNDLE_NAME, PodBundle, load_bundle
from jobruntime.verification.signed import check_skew
from tests.conftest import IMAGE, Runs
from tests.sessions import api, error_code
from tests.tamper import TamperingClient, flip_byte, payload, with_payload
from verifier.cli import command
from verifier.run import AttestationStep, VerifierConfig, verify_run


def tampering(runs: Runs, **kw: Any) -> TamperingClient:
    return TamperingClient(runs.emu.url, runs.emu.token("verifier"), retry_for=3.0, **kw)


def expect(code: str, config: VerifierConfig, **kw: Any) -> JobRuntimeError:
    with pytest.raises(JobRuntimeError) as info:
        verify_run(config, **kw)
    assert info.value.code == code, info.value.one_line()
    assert not (config.output_dir / BUNDLE_NAME).exists()
    assert not config.output_dir.exists() or not any(config.output_dir.iterdir())
    return info.value


def root_with(runs: Runs, path: Path, **changes: Any) -> Path:
    """A copy of the emulator's trust root with some fields replaced."""
    root = TrustRoot.load(runs.emu.trust_root).model_dump(mode="json")
    root.update(changes)
    path.write_text(json.dumps(root))
    return path


def load(runs: Runs, directory: Path) -> PodBundle:
    return load_bundle(directory, TrustRoot.load(runs.emu.trust_root), now=utcnow())


def control_key_with(runs: Runs, **changes: Any) -> list[dict[str, Any]]:
    root = TrustRoot.load(runs.emu.trust_root)
    cp = root.control_plane.keyids[0]
    return [k.model_dump(mode="json") | (changes if k.keyid == cp else {}) for k in root.keys]


# --- success --------------------------------------------------------------------------


def test_verified_run_writes_a_complete_bundle(runs: Runs) -> None:
    run_id = runs.approved()
    path = verify_run(runs.config(run_id))
    assert path.stat().st_mode & 0o777 == 0o600
    bundle = load(runs, path.parent)
    assert bundle.run_id == run_id
    assert bundle.receipt.checks == [
        "1. envelope",
        "2. control-plane signature",
        "3. spec schema",
        "4. owner approvals",
        "5. validity window",
        "6. run id",
        "7. module digest",
        "8. image digest",
        "9. attestation",
        "10. one-time claim",
    ]
    assert bundle.receipt.role == "driver" and len(bundle.receipt.pod_id) == 32
    with runs.emu.client("operator") as c:
        claimed = [e for e in c.audit().entries if e.run_id == run_id and e.event == "run.claimed"]
    assert [e.details["pod"] for e in claimed] == [bundle.receipt.pod_id]
    assert bundle.receipt.attestation is not None
    assert bundle.receipt.attestation["evidence_kind"] == "emulated"
    assert bundle.receipt.trust_root_digest == TrustRoot.load(runs.emu.trust_root).digest
    assert "key" not in json.dumps(bundle.receipt.model_dump(mode="json")).replace("keyid", "")


# --- 1. envelope and schema -----------------------------------------------------------


def test_unknown_field_in_a_signed_spec_is_refused(runs: Runs) -> None:
    key = SigningKey.load(runs.emu.state / "control-plane.key")
    run_id = runs.approved()

    def add_field(doc: dict[str, Any]) -> dict[str, Any]:
        spec = payload(doc) | {"shell": "rm -rf /"}
        return with_payload(doc, json.dumps(spec).encode(), resign=key)

    err = expect("spec.schema", runs.config(run_id), client=tampering(runs, spec=add_field))
    assert "shell" in err.message and "rm -rf" not in err.message


def test_oversized_spec_is_refused_before_parsing(runs: Runs) -> None:
    run_id = runs.approved()
    huge = json.dumps({"pad": "x" * (1024 * 1024)}).encode()
    expect(
        "spec.too_large",
        runs.config(run_id),
        client=tampering(runs, spec=lambda d: with_payload(d, huge)),
    )


def test_deeply_nested_spec_is_refused_before_parsing(runs: Runs) -> None:
    run_id = runs.approved()
    deep = b"[" * 5000 + b"]" * 5000
    # Verify, then parse: unsigned bytes are never parsed, however they nest.
    expect(
        "signature.invalid",
        runs.config(run_id),
        client=tampering(runs, spec=lambda d: with_payload(d, deep)),
    )
    # Signed by the control plane's own key, the depth limit still holds before parsing.
    key = SigningKey.load(runs.emu.state / "control-plane.key")
    expect(
        "spec.too_deep",
        runs.config(run_id),
        client=tampering(runs, spec=lambda d: with_payload(d, deep, resign=key)),
    )


def test_wrong_payload_type_is_refused(runs: Runs) -> None:
    run_id = runs.approved()

    def retype(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "envelope": {**doc["envelope"], "payloadType": "text/plain"}}

    expect("envelope.malformed", runs.config(run_id), client=tampering(runs, spec=retype))


# --- 2. control-plane signature -------------------------------------------------------


def test_one_flipped_payload_byte_breaks_the_signature(runs: Runs) -> None:
    run_id = runs.approved()
    expect("signature.invalid", runs.config(run_id), client=tampering(runs, spec=flip_byte))


def test_spec_signed_by_an_unknown_key_is_refused(runs: Runs) -> None:
    run_id = runs.approved()
    stranger = SigningKey.generate("ecdsa-p256")

    def resign(doc: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(payload(doc)).encode()
        return with_payload(doc, raw, resign=stranger)

    expect("signature.unknown_key", runs.config(run_id), client=tampering(runs, spec=resign))


def test_revoked_control_plane_key_is_refused(runs: Runs, tmp_path: Path) -> None:
    root = root_with(runs, tmp_path / "root.json", keys=control_key_with(runs, revoked=True))
    expect("signature.key_revoked", runs.config(runs.approved(), trust_root=root))


def test_expired_control_plane_key_is_refused(runs: Runs, tmp_path: Path) -> None:
    past = utcnow() - timedelta(days=30)
    keys = control_key_with(
        runs, not_before=(past - timedelta(days=1)).isoformat(), not_after=past.isoformat()
    )
    root = root_with(runs, tmp_path / "root.json", keys=keys)
    expect("signature.key_expired", runs.config(runs.approved(), trust_root=root))


def test_rotated_key_valid_in_the_trust_root_still_verifies(runs: Runs, tmp_path: Path) -> None:
    old = SigningKey.generate()
    now = utcnow()
    retired = TrustedKey(
        keyid=old.keyid,
        public_key_pem=old.public_pem,
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=1),
    )
    base = TrustRoot.load(runs.emu.trust_root)
    root = base.model_copy(
        update={
            "keys": [*base.keys, retired],
            "control_plane": Role(keyids=[*base.control_plane.keyids, old.keyid]),
        }
    )
    path = tmp_path / "root.json"
    path.write_text(root.to_json())
    assert verify_run(runs.config(runs.approved(), trust_root=path)).exists()


# --- 3. owner approvals ---------------------------------------------------------------


def test_missing_owner_approval_is_refused(runs: Runs) -> None:
    run_id = runs.submit()
    runs.approve(run_id, "org-a")
    err = expect("approval.threshold", runs.config(run_id))
    assert "org-b has 0 of 1" in err.message


def test_duplicate_approver_counts_once(runs: Runs, tmp_path: Path) -> None:
    """org-a needs two distinct keys; the same key approving twice is still one."""
    second = SigningKey.generate()
    base = TrustRoot.load(runs.emu.trust_root)
    now = utcnow()
    extra = TrustedKey(
        keyid=second.keyid,
        public_key_pem=second.public_pem,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=1),
    )
    org_a = base.owners["org-a"]
    root = base.model_copy(
        update={
            "keys": [*base.keys, extra],
            "owners": {
                **base.owners,
                "org-a": Role(keyids=[*org_a.keyids, second.keyid], threshold=2),
            },
        }
    )
    path = tmp_path / "root.json"
    path.write_text(root.to_json())
    run_id = runs.approved()
    again = runs.approval(run_id, "org-a")

    def duplicate(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "approvals": [*doc["approvals"], again, again]}

    err = expect(
        "approval.threshold",
        runs.config(run_id, trust_root=path),
        client=tampering(runs, spec=duplicate),
    )
    assert "org-a has 1 of 2 distinct approving keys" in err.message


def test_key_listed_twice_in_a_role_counts_once(runs: Runs, tmp_path: Path) -> None:
    base = TrustRoot.load(runs.emu.trust_root).model_dump(mode="json")
    keyid = base["owners"]["org-a"]["keyids"][0]
    base["owners"]["org-a"] = {"keyids": [keyid, keyid], "threshold": 2}
    path = tmp_path / "root.json"
    path.write_text(json.dumps(base))
    err = expect("trustroot.invalid", runs.config(runs.approved(), trust_root=path))
    assert "needs 2 keys but lists 1 distinct" in err.message


def test_forged_approval_does_not_count(runs: Runs) -> None:
    run_id = runs.submit()
    runs.approve(run_id, "org-a")
    forged = runs.approval(run_id, "org-b", key=SigningKey.generate())

    def inject(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "approvals": [*doc["approvals"], forged]}

    err = expect("approval.threshold", runs.config(run_id), client=tampering(runs, spec=inject))
    assert "signature.unknown_key" in err.message


# --- 4. validity window ---------------------------------------------------------------


def window(start: timedelta, end: timedelta) -> dict[str, str]:
    now = utcnow()
    return {"not_before": (now + start).isoformat(), "expires": (now + end).isoformat()}


def test_expired_spec_is_refused(runs: Runs) -> None:
    run_id = runs.approved(validity=window(timedelta(hours=-2), timedelta(minutes=5)))
    err = expect("validity.expired", runs.config(run_id), now=utcnow() + timedelta(hours=1))
    assert run_id in err.message


def test_spec_not_yet_valid_is_refused(runs: Runs) -> None:
    run_id = runs.approved(validity=window(timedelta(hours=1), timedelta(hours=2)))
    expect("validity.not_yet_valid", runs.config(run_id))


def test_clock_skew_is_allowed_but_bounded(runs: Runs) -> None:
    run_id = runs.approved(validity=window(timedelta(seconds=30), timedelta(hours=1)))
    assert verify_run(runs.config(run_id, clock_skew=timedelta(seconds=60))).exists()
    with pytest.raises(JobRuntimeError) as info:
        check_skew(timedelta(hours=1))
    assert info.value.code == "config.invalid"


# --- 5. run id ------------------------------------------------------------------------


def test_spec_for_another_run_is_refused(runs: Runs) -> None:
    mine, other = runs.approved(), runs.approved()
    with runs.emu.client("verifier") as c:
        other_doc = json.loads(c.signed_run_bytes(other))
    err = expect(
        "run.mismatch", runs.config(mine), client=tampering(runs, spec=lambda _: other_doc)
    )
    assert mine in err.message and other in err.message


# --- 6. and 7. code digests -----------------------------------------------------------


def test_swapped_module_file_is_refused(runs: Runs) -> None:
    run_id = runs.approved()
    runs.module.write_bytes(b"def run(ctx):\n    exfiltrate(ctx)\n")
    expect("digest.module", runs.config(run_id))


def test_wrong_image_digest_is_refused(runs: Runs) -> None:
    expect("digest.image", runs.config(runs.approved(), image_digest="sha256:" + "cd" * 32))


def test_failed_digest_check_does_not_use_up_the_claim(runs: Runs) -> None:
    run_id = runs.approved()
    expect("digest.image", runs.config(run_id, image_digest="sha256:" + "cd" * 32))
    assert verify_run(runs.config(run_id)).exists()


# --- 8. one-time claim ----------------------------------------------------------------


def test_replayed_claim_is_refused(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.approved()
    verify_run(runs.config(run_id))
    expect("claim.replayed", runs.config(run_id, output_dir=tmp_path / "second"))


def test_cancelled_run_is_refused(runs: Runs) -> None:
    run_id = runs.approved()
    with runs.emu.client("operator") as c:
        c.cancel(run_id, "owner withdrew")
    expect("claim.cancelled", runs.config(run_id))


def test_forged_claim_receipt_is_refused(runs: Runs) -> None:
    stranger = SigningKey.generate()

    def forge(receipt: dict[str, Any]) -> dict[str, Any]:
        env = envelope.from_json(receipt, envelope.CLAIM_TYPE, "receipt")
        return envelope.to_json(envelope.sign(env.payload, envelope.CLAIM_TYPE, [stranger]))

    err = expect("claim.refused", runs.config(runs.approved()), client=tampering(runs, claim=forge))
    assert "signature.unknown_key" in err.message


# --- the control plane ----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_control_plane_fails_cleanly_after_the_deadline(runs: Runs) -> None:
    config = runs.config(
        "run-000000", control_plane_url=f"http://127.0.0.1:{closed_port()}", deadline=1.0
    )
    started = time.monotonic()
    expect("controlplane.unavailable", config)
    assert 1.0 <= time.monotonic() - started < 5.0


def test_emulator_restarted_mid_flow_the_verifier_still_succeeds(tmp_path: Path) -> None:
    emu = EmulatorProcess(tmp_path / "emu").start()
    try:
        runs = Runs(emu, tmp_path)
        run_id = runs.approved()
        emu.stop()
        result: dict[str, Any] = {}

        def verify() -> None:
            try:
                result["path"] = verify_run(runs.config(run_id, deadline=30.0))
            except JobRuntimeError as exc:
                result["error"] = exc

        t = threading.Thread(target=verify)
        t.start()
        time.sleep(1.0)
        emu.start()
        t.join(60)
        assert "error" not in result, result
        assert result["path"].exists()
    finally:
        emu.stop()


# --- the command line -----------------------------------------------------------------


def cli(
    runs: Runs, run_id: str, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    token = tmp_path / "token"
    token.write_text(runs.emu.token("verifier"))
    config = runs.config(
        run_id, output_dir=tmp_path / "out", termination_log=tmp_path / "termination", deadline=2.0
    )
    args = [*command(config, token), *extra]
    env = env or {**os.environ, "JOBRUNTIME_DEV": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)


def test_cli_success_prints_the_bundle_path(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.approved()
    proc = cli(runs, run_id, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"verified {run_id}" in proc.stdout
    assert (tmp_path / "out" / BUNDLE_NAME).exists()


def termination(path: Path) -> dict[str, Any]:
    text = path.read_text()
    assert "\n" not in text and len(text.encode()) <= 4096
    message: dict[str, Any] = json.loads(text)
    return message


def test_cli_failure_writes_one_line_and_exit_code(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.approved()
    proc = cli(runs, run_id, tmp_path, "--image-digest", "sha256:" + "00" * 32)
    assert proc.returncode == 17
    reason = termination(tmp_path / "termination")
    assert reason["error"].startswith("digest.image: ")
    assert (reason["run_id"], reason["role"], reason["code"]) == (run_id, "driver", "digest.image")
    assert (reason["exit_code"], reason["step"]) == (17, 8)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_refusal_reaches_the_operator_through_runs_status(runs: Runs, tmp_path: Path) -> None:
    """The operator sees why the verifier refused (code, step, role) with `runs status`;
    the run is not touched by it."""
    run_id = runs.approved()
    runs.module.write_bytes(b"def run(ctx):\n    return 1\n")  # not the approved module
    proc = cli(runs, run_id, tmp_path)
    assert proc.returncode == 16, proc.stderr
    assert termination(tmp_path / "termination")["step"] == 7
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobruntime",
            "runs",
            "status",
            run_id,
            "--emulator-state",
            str(runs.emu.state),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["state"] == "approved"
    assert [(r["role"], r["code"], r["exit_code"], r["step"]) for r in shown["refusals"]] == [
        ("driver", "digest.module", 16, 7)
    ]


def test_reported_refusals_are_bounded_typed_and_change_nothing(runs: Runs) -> None:
    run_id = runs.approved()
    path = f"/runs/{run_id}/refusals"
    good = {"role": "driver", "code": "digest.module", "exit_code": 16, "step": 7}
    for bad in (
        {**good, "code": "Free text with <data>"},
        {**good, "exit_code": 0},
        {**good, "step": 11},
        {**good, "at": "2020-01-01T00:00:00Z", "extra": 1},
    ):
        resp = api(runs.emu, "verifier", "POST", path, bad)
        assert (resp.status_code, error_code(resp)) == (422, "request.invalid"), bad
    for principal in ("submitter", "owner:org-a"):
        resp = api(runs.emu, principal, "POST", path, good)
        assert (resp.status_code, error_code(resp)) == (403, "auth.forbidden")
    for _ in range(16):
        assert api(runs.emu, "verifier", "POST", path, good).status_code == 200
    resp = api(runs.emu, "verifier", "POST", path, good)
    assert (resp.status_code, error_code(resp)) == (429, "run.too_many_refusals")
    with runs.emu.client("operator") as c:
        status = c.status(run_id)
    assert status.state is RunState.APPROVED and len(status.refusals) == 16


def test_cli_outside_development_mode_refuses_anchors_from_flags(
    runs: Runs, tmp_path: Path
) -> None:
    """The trust root, module and control plane come from the image, never the namespace."""
    env = {k: v for k, v in os.environ.items() if k != "JOBRUNTIME_DEV"}
    proc = cli(runs, runs.approved(), tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    reason = termination(tmp_path / "termination")["error"]
    assert reason.startswith("config.invalid: the trust root, control-plane URL")
    assert "come from the image" in reason
    assert not (tmp_path / "out").exists()


def test_cli_in_development_mode_says_so(runs: Runs, tmp_path: Path) -> None:
    proc = cli(runs, runs.approved(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "DEVELOPMENT MODE" in proc.stderr


def test_cli_reads_its_inputs_from_the_environment(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.approved()
    token = tmp_path / "token"
    token.write_text(runs.emu.token("verifier"))
    env = {
        **os.environ,
        "JOB_RUN_ID": run_id,
        "JOB_CONTROL_PLANE_URL": runs.emu.url,
        "JOB_VERIFIER_TOKEN_FILE": str(token),
        "JOB_TRUST_ROOT": str(runs.emu.trust_root),
        "JOB_MODULE_PATH": str(runs.module),
        "JOB_IMAGE_DIGEST": IMAGE,
        "JOB_BUNDLE_DIR": str(tmp_path / "env-out"),
        "JOB_TERMINATION_LOG": str(tmp_path / "t"),
        "JOB_TEE": "emulated",
        "JOB_EMULATED_TEE_DIR": str(runs.emu.state / "tee"),
        "JOBRUNTIME_DEV": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "verifier"], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "env-out" / BUNDLE_NAME).exists()


def test_cli_missing_inputs_is_a_config_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "verifier", "--termination-log", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "JOBRUNTIME_DEV": "1"},
    )
    assert proc.returncode == 2
    assert termination(tmp_path / "t")["error"].startswith("config.invalid: no control-plane URL")


# --- 9. attestation, and executor mode ------------------------------------------------


def attesting_with(provider: EvidenceProvider) -> AttestationStep:
    def attest(client: ControlPlaneClient, pod: PodIdentity) -> tuple[AttestedSession, Any]:
        session = AttestedSession(client, pod, provider, "verifier")
        session.attest()
        return session, {}

    return attest


def test_debug_guest_evidence_is_refused_at_step_9(runs: Runs) -> None:
    debug = EmulatedProvider(
        load_tee(runs.emu.state / "tee"), measurement=EMULATED_MEASUREMENT, policy=0x30000 | 1 << 19
    )
    run_id = runs.approved()
    expect("attestation.debug", runs.config(run_id), attestation=attesting_with(debug))
    with runs.emu.client("operator") as c:
        assert c.status(run_id).state == "approved"  # not claimed: attestation comes first


def test_vmpl3_evidence_is_refused_and_claims_nothing(runs: Runs) -> None:
    vmpl3 = EmulatedProvider(
        load_tee(runs.emu.state / "tee"), measurement=EMULATED_MEASUREMENT, vmpl=3
    )
    run_id = runs.approved()
    expect("attestation.vmpl", runs.config(run_id), attestation=attesting_with(vmpl3))
    with runs.emu.client("operator") as c:
        assert c.status(run_id).state == "approved"


def test_no_hardware_tee_here_is_a_clear_error(runs: Runs) -> None:
    err = expect("attestation.no_tee", runs.config(runs.approved(), tee="auto"))
    assert "configfs" in err.message or "sev-guest" in err.message


def test_executor_mode_verifies_a_claimed_run_without_claiming(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.approved()
    verify_run(runs.config(run_id))
    path = verify_run(runs.config(run_id, mode="executor", output_dir=tmp_path / "executor"))
    bundle = load(runs, path.parent)
    assert bundle.receipt.checks[-2:] == ["9. attestation", "10. run claimed by the driver's pod"]
    assert bundle.receipt.role == "executor"


def test_executor_mode_refuses_an_unclaimed_run(runs: Runs) -> None:
    err = expect("claim.refused", runs.config(runs.approved(), mode="executor"))
    assert "has not claimed it" in err.message


def test_executor_mode_refuses_a_cancelled_run(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.approved()
    verify_run(runs.config(run_id))
    with runs.emu.client("operator") as c:
        c.cancel(run_id)
    expect("claim.cancelled", runs.config(run_id, mode="executor", output_dir=tmp_path / "x"))
