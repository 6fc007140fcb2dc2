"""The whole data path with the real KMS: owners encrypt, an attested run reads and
writes through the key agent, the owner decrypts the result, the control plane
refuses a rollback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from jobruntime.dataset.versions import manifest_path
from tests.conftest import Runs
from tests.pods import driver_pod_agent


def jr(runs: Runs, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "jobruntime", *args, "--emulator-state", str(runs.emu.state)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def key_of(runs: Runs, run_id: str, name: str) -> str:
    dataset = runs.signed(run_id).spec.dataset(name)
    assert dataset is not None
    return dataset.key_id


def test_owner_encrypts_run_reads_and_writes_owner_decrypts(
    spark: Any, runs: Runs, tmp_path: Path, shm_dir: Path
) -> None:
    uris = {n: f"file://{tmp_path / n}" for n in ("customers_a", "customers_b", "overlap")}
    run_id = runs.keyed(uris=uris)
    # 1. Each owner encrypts its CSV with its own key (owner API, no attestation).
    for name, segment in (("customers_a", "gold"), ("customers_b", "silver")):
        src = tmp_path / f"{name}.csv"
        pacsv.write_csv(pa.table({"id": list(range(100)), "segment": [segment] * 100}), src)
        out = jr(
            runs,
            "dataset",
            "encrypt",
            str(src),
            "--to",
            uris[name],
            "--key",
            key_of(runs, run_id, name),
        )
        assert out.returncode == 0, out.stderr
        assert "version 1, 100 rows" in out.stdout
    inspect = subprocess.run(
        [sys.executable, "-m", "jobruntime", "dataset", "inspect", uris["customers_a"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "segment: string" in inspect.stdout
    assert "gold" not in inspect.stdout
    # 2. The run is verified and attested; its key agent serves the datasets.
    with driver_pod_agent(runs, run_id, shm_dir) as socket:

        def frame(name: str) -> Any:
            return (
                spark.read.format("confidential")
                .option("dataset", name)
                .option("keyAgentSocket", str(socket))
                .load(uris[name])
            )

        joined = frame("customers_a").unionByName(frame("customers_b"))
        result = joined.groupBy("segment").count()
        (
            result.write.format("confidential")
            .option("dataset", "overlap")
            .option("keyId", key_of(runs, run_id, "overlap"))
            .option("keyAgentSocket", str(socket))
            .mode("overwrite")
            .save(uris["overlap"])
        )
    # 3. The output's owner decrypts it to a file only it can read.
    target = tmp_path / "overlap.parquet"
    out = jr(
        runs,
        "dataset",
        "decrypt",
        uris["overlap"],
        "--to",
        str(target),
        "--key",
        key_of(runs, run_id, "overlap"),
    )
    assert out.returncode == 0, out.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    got = {r["segment"]: r["count"] for r in pq.read_table(target).to_pylist()}
    assert got == {"gold": 100, "silver": 100}


def test_control_plane_refuses_a_rolled_back_dataset(runs: Runs, tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'customers_a'}"
    run_id = runs.keyed(uris={"customers_a": uri})
    key = key_of(runs, run_id, "customers_a")
    src = tmp_path / "a.csv"
    for rows in (10, 20):
        pacsv.write_csv(pa.table({"id": list(range(rows))}), src)
        assert jr(runs, "dataset", "encrypt", str(src), "--to", uri, "--key", key).returncode == 0
    root = Path(uri.removeprefix("file://"))
    # The attacker hides version 2, and puts version 1's manifest where 2 was.
    (root / manifest_path(2)).write_bytes((root / manifest_path(1)).read_bytes())
    out = jr(runs, "dataset", "decrypt", uri, "--to", str(tmp_path / "x.csv"), "--key", key)
    assert out.returncode == 24
    assert out.stderr.startswith("jobruntime: dataset.rollback:")
    assert not (tmp_path / "x.csv").exists()


def test_an_owner_cannot_decrypt_another_owners_dataset(runs: Runs, tmp_path: Path) -> None:
    uri = f"file://{tmp_path / 'customers_b'}"
    run_id = runs.keyed(uris={"customers_b": uri})
    key = key_of(runs, run_id, "customers_b")  # org-b's key
    out = jr(
        runs,
        "dataset",
        "decrypt",
        uri,
        "--to",
        str(tmp_path / "x.csv"),
        "--key",
        key,
        "--as",
        "owner:org-a",
    )
    assert out.returncode == 20
    assert "auth.forbidden" in out.stderr


@pytest.mark.parametrize("bad", ["missing.csv", "notes.txt"])
def test_encrypt_refuses_bad_sources_in_one_line(runs: Runs, tmp_path: Path, bad: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    out = jr(
        runs,
        "dataset",
        "encrypt",
        str(tmp_path / bad),
        "--to",
        str(tmp_path / "d"),
        "--key",
        "org-a/customers",
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
