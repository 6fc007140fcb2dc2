"""`make demo`: a two-party clean-room job, end to end, on this machine.

Two organisations encrypt their customer tables with their own keys; a data
scientist submits jobs/overlap.py; the run is signed, approved by both owners,
verified and attested (emulated TEE), runs on real Spark reading and writing only
encrypted data through the key agent; the output's owner decrypts the result and
it is checked against plain pandas. Then a refusal, the audit chain, and a
summary of where the time went. Everything started is stopped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT  # noqa: E402
from jobruntime.dev.emulator import EmulatorProcess  # noqa: E402
from scripts.synthetic import customers, expected_overlap  # noqa: E402

WORK = ROOT / ".demo"
STATE = WORK / "emulator"
console = Console(highlight=False)
timings: list[tuple[str, float]] = []


@contextmanager
def step(title: str) -> Iterator[None]:
    console.rule(f"[bold]{title}")
    started = time.perf_counter()
    yield
    timings.append((title, time.perf_counter() - started))


def cli(*args: str, expect: int = 0, show: bool = True) -> str:
    """Run a console script of this venv, as a user would, and show what it printed."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    console.print(f"[dim]$ {' '.join(args)}[/dim]  [exit {proc.returncode}]")
    if show and (proc.stdout.strip() or proc.stderr.strip()):
        console.print((proc.stdout + proc.stderr).strip(), markup=False)
    if proc.returncode != expect:
        raise SystemExit(f"demo: {args[0]} exited {proc.returncode}, expected {expect}")
    return proc.stdout


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "plain").mkdir(parents=True)
    state = ["--emulator-state", str(STATE)]
    uris = {n: f"file://{WORK / 'data' / n}" for n in ("customers_a", "customers_b", "overlap")}
    emulator = EmulatorProcess(STATE)
    try:
        with step("Control-plane emulator (FastAPI + SQLite + KMS) on 127.0.0.1"):
            emulator.start()
            console.print(f"listening on {emulator.url}; state, keys and trust root in {STATE}")

        with step("Two organisations' synthetic customer tables (plaintext, theirs only)"):
            a, b = customers()
            for name, df in (("customers_a", a), ("customers_b", b)):
                df.to_csv(WORK / "plain" / f"{name}.csv", index=False)
                console.print(f"{name}: {len(df):,} customers, columns {', '.join(df.columns)}")

        with step("Each owner creates a dataset key and encrypts its table"):
            for org, name in (("org-a", "customers_a"), ("org-b", "customers_b")):
                cli(
                    "jobruntime",
                    "kms",
                    "create-key",
                    f"{org}/customers",
                    "--measurement",
                    EMULATED_MEASUREMENT.hex(),
                    "--allow-emulated",
                    *state,
                )
                cli(
                    "jobruntime",
                    "dataset",
                    "encrypt",
                    str(WORK / "plain" / f"{name}.csv"),
                    "--to",
                    uris[name],
                    "--key",
                    f"{org}/customers",
                    *state,
                )
            cli("jobruntime", "dataset", "inspect", uris["customers_a"])

        with step("Submit jobs/overlap.py: sign, approve, verify, attest, run on Spark"):
            cli(
                "jobruntime",
                "submit",
                "jobs/overlap.py",
                "--input",
                f"customers_a={uris['customers_a']}",
                "--input",
                f"customers_b={uris['customers_b']}",
                "--output",
                f"overlap={uris['overlap']}",
                "--param",
                "k=10",
                *state,
            )

        with step("org-a decrypts the result, which matches plain pandas"):
            result = WORK / "overlap.csv"
            cli(
                "jobruntime",
                "dataset",
                "decrypt",
                uris["overlap"],
                "--to",
                str(result),
                "--key",
                "org-a/overlap",
                *state,
            )
            got = pd.read_csv(result)
            table = Table(title="Customers both organisations share, per segment (k = 10)")
            table.add_column("segment")
            table.add_column("customers", justify="right")
            for row in got.itertuples():
                table.add_row(str(row.segment), f"{row.customers:,}")
            console.print(table)
            expected = expected_overlap(a, b, k=10)
            same = dict(zip(got["segment"], got["customers"], strict=True)) == expected
            console.print(f"equal to the same computation in plain pandas: {same}")
            if not same:
                raise SystemExit("demo: the result differs from plain pandas")

        with step("Refusal: storage flips one byte of an encrypted file"):
            part = next((WORK / "data" / "customers_b").glob("v*/part-*.parquet"))
            data = bytearray(part.read_bytes())
            data[len(data) // 2] ^= 0x01
            part.write_bytes(bytes(data))
            cli(
                "jobruntime",
                "dataset",
                "decrypt",
                uris["customers_b"],
                "--to",
                str(WORK / "b.csv"),
                "--key",
                "org-b/customers",
                *state,
                expect=24,
            )
            console.print(f"nothing written: {not (WORK / 'b.csv').exists()}")

        with step("Audit log: every event hash-chained and signed"):
            cli(
                "jobruntime",
                "audit",
                "verify",
                "--trust-root",
                str(STATE / "trust-root.json"),
                *state,
            )
    finally:
        emulator.stop()

    summary = Table(title="Where the demo's time went")
    summary.add_column("step")
    summary.add_column("seconds", justify="right")
    for title, seconds in timings:
        summary.add_row(title, f"{seconds:.1f}")
    summary.add_row("[bold]total", f"[bold]{sum(s for _, s in timings):.1f}")
    console.print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
