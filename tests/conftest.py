"""Shared fixtures: one real emulator per test session, and a factory for runs."""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy
from jobruntime.emulator.process import EmulatorProcess
from jobruntime.signing.approvals import sign_approval
from jobruntime.signing.keys import SigningKey
from jobruntime.spec.checks import decode
from jobruntime.spec.models import JobRunRequest, utcnow
from tests.azurite import AzuriteProcess, azurite
from verifier.run import VerifierConfig

__all__ = ["azurite"]  # the session fixture, for every test folder

IMAGE = "sha256:" + "ab" * 32
DATASETS = (
    ("customers_a", "org-a", "in"),
    ("customers_b", "org-b", "in"),
    ("overlap", "org-a", "out"),
)
MODULE_SOURCE = b"def run(ctx):\n    return None\n"


@pytest.fixture(scope="session")
def spark(azurite: AzuriteProcess) -> Iterator[Any]:
    """One local SparkSession for the whole run: starting one takes about 10 s here.

    Its Python workers inherit this environment, so the Azurite connection string
    set here is how executors reach az:// datasets (never a data source option).
    """
    os.environ["JOBRUNTIME_AZURE_CONNECTION_STRING"] = azurite.connection_string
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from jobruntime.datasource import register

    session = (
        SparkSession.builder.master("local[2]")
        .appName("jobruntime-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.python.filterPushdown.enabled", "true")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    register(session)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(tmp_path_factory.mktemp("emulator")).start()
    yield emu
    emu.stop()


@dataclass
class Runs:
    """Builds requests, submits them, approves them: the happy path, reusable."""

    emu: EmulatorProcess
    tmp: Path

    @property
    def module(self) -> Path:
        path = self.tmp / "jobs" / "sample.py"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(MODULE_SOURCE)
        return path

    def request(self, **overrides: Any) -> JobRunRequest:
        body: dict[str, Any] = {
            "job_id": "overlap",
            "workspace": "demo",
            "module": {
                "import_name": "jobs.sample",
                "sha256": hashlib.sha256(self.module.read_bytes()).hexdigest(),
            },
            "image_digest": IMAGE,
            "parameters": {"k": 10, "label": "x"},
            "inputs": [
                {
                    "name": "customers_a",
                    "uri": "file:///data/a",
                    "key_id": "org-a/customers",
                    "owner": "org-a",
                },
                {
                    "name": "customers_b",
                    "uri": "file:///data/b",
                    "key_id": "org-b/customers",
                    "owner": "org-b",
                },
            ],
            "outputs": [
                {
                    "name": "overlap",
                    "uri": "file:///data/o",
                    "key_id": "org-a/overlap",
                    "owner": "org-a",
                }
            ],
        }
        body.update(overrides)
        return JobRunRequest.model_validate(body)

    def submit(self, **overrides: Any) -> str:
        with self.emu.client("submitter") as c:
            return c.submit(self.request(**overrides)).run_id

    def approval(self, run_id: str, owner: str, key: SigningKey | None = None) -> dict[str, Any]:
        key = key or SigningKey.load(self.emu.owner_key(owner))
        with self.emu.client("submitter") as c:
            subject = decode(c.signed_run_bytes(run_id), utcnow())
        return sign_approval(subject.spec, subject.spec_digest, owner, key, utcnow())

    def approve(self, run_id: str, *owners: str) -> None:
        for owner in owners or ("org-a", "org-b"):
            with self.emu.client(f"owner:{owner}") as c:
                c.approve(run_id, self.approval(run_id, owner))

    def approved(self, **overrides: Any) -> str:
        run_id = self.submit(**overrides)
        self.approve(run_id)
        return run_id

    def keyed(self, policy: ReleasePolicy | None = None, uris: dict[str, str] | None = None) -> str:
        """An approved run whose three datasets have fresh master keys in the KMS."""
        tag = secrets.token_hex(4)
        uris = uris or {}
        policy = policy or ReleasePolicy(
            evidence_kinds=[EvidenceKind.SEV_SNP, EvidenceKind.AZURE_VTPM, EvidenceKind.EMULATED],
            measurements=[EMULATED_MEASUREMENT.hex()],
        )
        datasets = []
        for name, owner, io in DATASETS:
            key_id = f"{owner}/{name}-{tag}"
            with self.emu.client(f"owner:{owner}") as c:
                c.create_key(key_id, policy)
            datasets.append(
                (
                    io,
                    {
                        "name": name,
                        "uri": uris.get(name, f"file:///data/{name}"),
                        "key_id": key_id,
                        "owner": owner,
                    },
                )
            )
        return self.approved(
            inputs=[d for io, d in datasets if io == "in"],
            outputs=[d for io, d in datasets if io == "out"],
        )

    def config(self, run_id: str, **overrides: Any) -> VerifierConfig:
        values: dict[str, Any] = {
            "run_id": run_id,
            "control_plane_url": self.emu.url,
            "token": self.emu.token("verifier"),
            "trust_root": self.emu.trust_root,
            "module_path": self.module,
            "image_digest": IMAGE,
            "output_dir": self.tmp / "bundle",
            "termination_log": self.tmp / "termination-log",
            "deadline": 3.0,
            "tee": "emulated",
            "emulated_tee_dir": self.emu.state / "tee",
        }
        values.update(overrides)
        return VerifierConfig(**values)


@pytest.fixture
def runs(emulator: EmulatorProcess, tmp_path: Path) -> Runs:
    return Runs(emulator, tmp_path)
