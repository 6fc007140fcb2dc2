"""Spec models, limits, canonical JSON, keys, DSSE and the trust root, without a server."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from jobruntime.errors import JobRuntimeError
from jobruntime.signing import envelope
from jobruntime.signing.keys import ALGORITHMS, SigningKey
from jobruntime.signing.trustroot import Role, TrustedKey, TrustRoot
from jobruntime.spec.codec import MAX_DEPTH, MAX_SPEC_BYTES, canonical, check_limits, parse_model
from jobruntime.spec.models import JobRunSpec, utcnow


def spec_dict(**overrides: Any) -> dict[str, Any]:
    now = utcnow()
    body: dict[str, Any] = {
        "schema_version": 1,
        "run_id": "run-abcdef-1234",
        "job_id": "sales",
        "workspace": "demo",
        "module": {"import_name": "jobs.sales", "sha256": "0" * 64, "entry": "run"},
        "image_digest": "sha256:" + "1" * 64,
        "parameters": {"k": 5, "ratio": 0.5, "flag": True, "names": ["a", "b"]},
        "inputs": [
            {"name": "sales", "uri": "file:///d/s", "key_id": "org-a/sales", "owner": "org-a"}
        ],
        "outputs": [
            {"name": "summary", "uri": "file:///d/o", "key_id": "org-a/summary", "owner": "org-a"}
        ],
        "validity": {
            "not_before": now.isoformat(),
            "expires": (now + timedelta(hours=1)).isoformat(),
        },
        "nonce": "2" * 64,
        "approval_policy": {"required_owners": ["org-a"], "threshold": 1},
    }
    body.update(overrides)
    return body


def code_of(fn: Any, *args: Any) -> str:
    with pytest.raises(JobRuntimeError) as info:
        fn(*args)
    return info.value.code


def as_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- the spec model -------------------------------------------------------------------


def test_a_valid_spec_parses_and_round_trips_canonically() -> None:
    spec = parse_model(JobRunSpec, as_bytes(spec_dict()), "spec")
    again = parse_model(JobRunSpec, canonical(spec), "spec")
    assert canonical(again) == canonical(spec)
    assert canonical(spec).startswith(b'{"approval_policy":')  # RFC 8785 sorts keys


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"extra": 1}, "extra"),
        ({"module": {"import_name": "jobs.x", "sha256": "0" * 64, "shell": "sh"}}, "shell"),
        ({"schema_version": 2}, "schema_version"),
        ({"nonce": "short"}, "nonce"),
        ({"image_digest": "latest"}, "image_digest"),
        ({"parameters": {"k": {"nested": 1}}}, "parameters"),
        (
            {"validity": {"not_before": "2026-01-01T00:00:00", "expires": "2026-01-02T00:00:00"}},
            "validity",
        ),
    ],
)
def test_schema_violations_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(JobRuntimeError) as info:
        parse_model(JobRunSpec, as_bytes(spec_dict(**change)), "spec")
    assert info.value.code == "spec.schema"
    assert field in info.value.message


def test_schema_errors_do_not_echo_values() -> None:
    secret = "SENTINEL-4f1d"
    with pytest.raises(JobRuntimeError) as info:
        parse_model(JobRunSpec, as_bytes(spec_dict(nonce=secret)), "spec")
    assert secret not in info.value.message


def test_input_owners_must_be_in_the_approval_policy() -> None:
    bad = spec_dict(approval_policy={"required_owners": ["org-b"]})
    with pytest.raises(JobRuntimeError) as info:
        parse_model(JobRunSpec, as_bytes(bad), "spec")
    assert "misses dataset owners: org-a" in info.value.message


def test_dataset_names_are_unique() -> None:
    out = spec_dict()["inputs"][0]
    assert (
        code_of(parse_model, JobRunSpec, as_bytes(spec_dict(outputs=[out])), "s") == "spec.schema"
    )


# --- limits before parsing ------------------------------------------------------------


def test_size_limit_is_exact() -> None:
    check_limits(b" " * MAX_SPEC_BYTES, "spec")
    assert code_of(check_limits, b" " * (MAX_SPEC_BYTES + 1), "spec") == "spec.too_large"


def test_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    check_limits(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "spec")
    check_limits(b'["' + b"[" * 1000 + b'\\"[["]', "spec")
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert code_of(check_limits, deep, "spec") == "spec.too_deep"


def test_not_json_is_a_schema_error() -> None:
    assert code_of(parse_model, JobRunSpec, b"\xff{", "spec") == "spec.schema"


# --- keys and DSSE --------------------------------------------------------------------


def trust_root_for(*keys: SigningKey, **key_fields: Any) -> TrustRoot:
    now = utcnow()
    fields: dict[str, Any] = {
        "not_before": now - timedelta(hours=1),
        "not_after": now + timedelta(hours=1),
    } | key_fields
    return TrustRoot(
        keys=[TrustedKey(keyid=k.keyid, public_key_pem=k.public_pem, **fields) for k in keys],
        control_plane=Role(keyids=[k.keyid for k in keys], threshold=len(keys)),
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_signs_and_verifies(algorithm: str, tmp_path: Path) -> None:
    key = SigningKey.generate(algorithm)  # type: ignore[arg-type]
    key.save(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    loaded = SigningKey.load(tmp_path / "k")
    der = loaded.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert loaded.keyid == hashlib.sha256(der).hexdigest()
    env = envelope.sign(b"{}", envelope.SPEC_TYPE, [loaded])
    root = trust_root_for(key)
    assert envelope.verify(env, root, root.control_plane, "cp", utcnow()) == {key.keyid}


def test_threshold_counts_distinct_keys() -> None:
    a, b = SigningKey.generate(), SigningKey.generate("ecdsa-p256")
    root = trust_root_for(a, b)
    both = envelope.sign(b"{}", envelope.SPEC_TYPE, [a, b])
    assert len(envelope.verify(both, root, root.control_plane, "cp", utcnow())) == 2
    one = envelope.sign(b"{}", envelope.SPEC_TYPE, [a])
    with pytest.raises(JobRuntimeError) as info:
        envelope.verify(one, root, root.control_plane, "cp", utcnow())
    assert info.value.code == "signature.threshold"
    assert "1 of 2" in info.value.message


def test_two_signatures_by_one_key_are_malformed() -> None:
    a = SigningKey.generate()
    doc = envelope.to_json(envelope.sign(b"{}", envelope.SPEC_TYPE, [a]))
    doc["signatures"] = doc["signatures"] * 2
    assert code_of(envelope.from_json, doc, envelope.SPEC_TYPE, "e") == "envelope.malformed"


def test_trust_root_recomputes_key_ids() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    root = trust_root_for(a).model_dump(mode="json")
    root["keys"][0]["public_key_pem"] = b.public_pem
    with pytest.raises(JobRuntimeError) as info:
        TrustRoot.load(_write(root))
    assert info.value.code == "trustroot.invalid"
    assert "not the SHA-256 of its public key" in info.value.message


def _write(obj: Any) -> Path:
    import tempfile

    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    json.dump(obj, f)
    f.close()
    return Path(f.name)


# --- the CLI: keys generate, spec sign, spec verify -----------------------------------


def jr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_generate_sign_verify_and_refuse_a_flipped_byte(tmp_path: Path) -> None:
    out = jr("keys", "generate", "--algorithm", "ecdsa-p384", "--out", str(tmp_path / "cp.key"))
    assert out.returncode == 0, out.stderr
    key = SigningKey.load(tmp_path / "cp.key")
    assert out.stdout.startswith(key.keyid)
    root = tmp_path / "root.json"
    root.write_text(trust_root_for(key).to_json())
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict()))
    signed = tmp_path / "spec.dsse.json"
    out = jr("spec", "sign", str(spec), "--key", str(tmp_path / "cp.key"), "--out", str(signed))
    assert out.returncode == 0, out.stderr
    out = jr("spec", "verify", str(signed), "--trust-root", str(root), "--no-approvals")
    assert out.returncode == 0, out.stderr
    assert "ok  2. control-plane signature" in out.stdout

    doc = json.loads(signed.read_text())
    sig = bytearray(doc["signatures"][0]["sig"].encode())
    sig[10] = ord("A") if sig[10] != ord("A") else ord("B")
    doc["signatures"][0]["sig"] = sig.decode()
    signed.write_text(json.dumps(doc))
    out = jr("spec", "verify", str(signed), "--trust-root", str(root), "--no-approvals")
    assert out.returncode == 11
    assert out.stderr.startswith("jobruntime: signature.invalid")
    assert "Traceback" not in out.stderr
