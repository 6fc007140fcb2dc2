"""Shared fixtures: one real emulator per test session, and a factory for runs."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.controlplane.api import EvidenceKind, ReleasePolicy
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.signing.approvals import sign_approval
from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import TrustRoot
from jobruntime.spec.models import JobRunRequest, utcnow
from jobruntime.verification.signed import VerifiedSpec, verify_response
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
DEV_POLICY = ReleasePolicy(
    isolation=["pod", "node"],
    evidence_kinds=[EvidenceKind.SEV_SNP, EvidenceKind.AZURE_VTPM, EvidenceKind.EMULATED],
    measurements=[EMULATED_MEASUREMENT.hex()],
)


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
    from tests.javajar import ensure_jar

    builder = SparkSession.builder
    jar = ensure_jar()  # the native Parquet path's jar (issue 13): on the class path if built
    if jar is not None:
        builder = builder.config("spark.driver.extraClassPath", str(jar))
    session = (
        builder.master("local[2]")
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
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """One real standalone cluster (a master and two workers, each executor its own JVM)
    for every test that runs a job on one: (StandaloneCluster, ClusterInfo). Started on
    first use, stopped at the end of the session. tests/test_cluster.py keeps its own:
    it tests the cluster's own life (stale state, up again, wrong secrets)."""
    from jobruntime.dev.cluster.standalone import StandaloneCluster

    cluster = StandaloneCluster(tmp_path_factory.mktemp("standalone"), workers=2)
    info = cluster.up()
    try:
        yield cluster, info
    finally:
        cluster.down()


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
            # In-process tests have no pod launcher to measure HOST_DATA; the pod-isolation
            # path runs with real pods in tests/test_workload_identity.py and the e2e tests.
            "workload": {"isolation": "node"},
        }
        body.update(overrides)
        return JobRunRequest.model_validate(body)

    def submit(self, **overrides: Any) -> str:
        with self.emu.client("submitter") as c:
            return c.submit(self.request(**overrides)).run_id

    def signed(self, run_id: str) -> VerifiedSpec:
        """The run's spec as its owners see it: the control plane's signature checked."""
        with self.emu.client("submitter") as c:
            body = c.signed_run_bytes(run_id)
        return verify_response(
            body,
            TrustRoot.load(self.emu.trust_root),
            now=utcnow(),
            run_id=run_id,
            review=True,
        )

    def approval(self, run_id: str, owner: str, key: SigningKey | None = None) -> dict[str, Any]:
        key = key or SigningKey.load(self.emu.owner_key(owner))
        verified = self.signed(run_id)
        return sign_approval(verified.spec, verified.digest, owner, key, utcnow())

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
        return self.approved(**self.datasets(policy, uris))

    def datasets(
        self, policy: ReleasePolicy | None = None, uris: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Request overrides naming the three datasets, each under a fresh KMS key."""
        tag = secrets.token_hex(4)
        uris = uris or {}
        policy = policy or DEV_POLICY
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
        return {
            "inputs": [d for io, d in datasets if io == "in"],
            "outputs": [d for io, d in datasets if io == "out"],
        }

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


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh memory-backed directory of this test's own (key-agent sockets need tmpfs)."""
    path = Path(tempfile.mkdtemp(prefix="jobruntime-test-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


SPARK_FIXTURES = frozenset({"spark", "world", "overlap_run", "cluster", "standalone"})
"""Fixtures that start Spark (a session, a standalone cluster or a whole ``submit``)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs Spark is slow (``make test-fast`` leaves it out), marked or not."""
    for item in items:
        if SPARK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
