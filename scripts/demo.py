"""`make demo`: signed runs, verification, attestation and key release, for real.

It starts the emulator, has the data owners create dataset keys, submits a run of
jobs/overlap.py, collects both owners' approvals, runs job-verifier as a
Kubernetes init container would (attesting with the emulated TEE), starts the key
agent sidecar and reads keys from its socket, shows refusals (a key outside the
spec, a replayed claim, an edited module), verifies the audit chain, and stops
what it started. (The end-to-end issue adds the Spark run itself.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.emulator.process import EmulatorProcess
from jobruntime.errors import JobRuntimeError
from jobruntime.keyagent.client import KeyAgentClient
from jobruntime.keyagent.process import KeyAgentProcess

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
STATE = WORK / "emulator"
IMAGE = "sha256:" + hashlib.sha256(b"demo image").hexdigest()
console = Console()
timings: list[tuple[str, float]] = []


@contextmanager
def step(title: str) -> Iterator[None]:
    console.rule(f"[bold]{title}")
    started = time.perf_counter()
    yield
    timings.append((title, time.perf_counter() - started))


def cli(*args: str, expect: int = 0) -> str:
    """Run a console script from this venv and show what it printed."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = (proc.stdout + proc.stderr).strip()
    console.print(f"[dim]$ {' '.join(args)}[/dim]  [exit {proc.returncode}]")
    if out:
        console.print(out, highlight=False, markup=False)
    if proc.returncode != expect:
        raise SystemExit(f"demo: {args[0]} exited {proc.returncode}, expected {expect}")
    return proc.stdout


def verifier(run_id: str, module: Path, out: Path, expect: int = 0) -> str:
    url = (STATE / "emulator.url").read_text().strip()
    token = WORK / "verifier.token"
    tokens = json.loads((STATE / "tokens.json").read_text())["principals"]
    token.write_text(next(p["token"] for p in tokens if p["name"] == "verifier"))
    token.chmod(0o600)
    return cli(
        "job-verifier",
        "--run-id",
        run_id,
        "--control-plane-url",
        url,
        "--token-file",
        str(token),
        "--trust-root",
        str(STATE / "trust-root.json"),
        "--module",
        str(module),
        "--image-digest",
        IMAGE,
        "--output-dir",
        str(out),
        "--termination-log",
        str(WORK / "termination-log"),
        "--deadline",
        "5",
        "--tee",
        "emulated",
        "--emulated-tee-dir",
        str(STATE / "tee"),
        expect=expect,
    )


def request(module: Path) -> Path:
    body = {
        "job_id": "overlap",
        "workspace": "demo",
        "module": {
            "import_name": "jobs.overlap",
            "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
        },
        "image_digest": IMAGE,
        "parameters": {"k": 10},
        "inputs": [
            {
                "name": "customers_a",
                "uri": f"file://{WORK}/data/customers_a",
                "key_id": "org-a/customers",
                "owner": "org-a",
            },
            {
                "name": "customers_b",
                "uri": f"file://{WORK}/data/customers_b",
                "key_id": "org-b/customers",
                "owner": "org-b",
            },
        ],
        "outputs": [
            {
                "name": "overlap",
                "uri": f"file://{WORK}/data/overlap",
                "key_id": "org-a/overlap",
                "owner": "org-a",
            }
        ],
    }
    path = WORK / "request.json"
    path.write_text(json.dumps(body, indent=2))
    return path


def create_keys() -> None:
    measurement = EMULATED_MEASUREMENT.hex()
    for key_id in ("org-a/customers", "org-b/customers", "org-a/overlap"):
        cli(
            "jobruntime",
            "kms",
            "create-key",
            key_id,
            "--measurement",
            measurement,
            "--allow-emulated",
            "--emulator-state",
            str(STATE),
        )


def key_agent(emulator: EmulatorProcess, run_id: str) -> None:
    with KeyAgentProcess(emulator, WORK / "bundle") as agent:
        console.print(f"key agent for {run_id} listening on {agent.socket} (0600, tmpfs)")
        client = KeyAgentClient(agent.socket)
        for name in ("customers_a", "customers_b"):
            key = client.get_key(name)
            console.print(f"  [green]ok[/green]  {name}: a {len(key)}-byte key, held in memory")
        try:
            client.get_key("payroll")
        except JobRuntimeError as exc:
            console.print(f"  [red]refused[/red]  payroll: {exc.one_line()}")


def submit_and_approve(module: Path) -> str:
    out = cli("jobruntime", "runs", "submit", str(request(module)), "--emulator-state", str(STATE))
    run_id = out.split()[1]
    for owner in ("org-a", "org-b"):
        cli(
            "jobruntime",
            "approve",
            run_id,
            "--owner",
            owner,
            "--key",
            str(STATE / "owners" / f"{owner}.key"),
            "--emulator-state",
            str(STATE),
        )
    return run_id


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    module = ROOT / "jobs" / "overlap.py"
    emulator = EmulatorProcess(STATE)
    try:
        with step("Start the control-plane emulator (FastAPI + SQLite) on 127.0.0.1"):
            emulator.start()
            console.print(f"listening on {emulator.url}; keys, tokens, trust root in {STATE}")

        with step("Data owners create dataset master keys in the KMS, with release policies"):
            create_keys()

        with step("Submit a run of jobs/overlap.py; both data owners approve its digest"):
            run_id = submit_and_approve(module)

        with step("job-verifier (init container): checks 1-9, attested, bundle written 0600"):
            verifier(run_id, module, WORK / "bundle")
            bundle = json.loads((WORK / "bundle" / "verified-bundle.json").read_text())
            for line in bundle["receipt"]["checks"]:
                console.print(f"  [green]ok[/green]  {line}")

        with step("Key agent (sidecar): attests once, gets the spec's keys, serves a reader"):
            key_agent(emulator, run_id)

        with step("Refusal: the same run claimed a second time"):
            verifier(run_id, module, WORK / "bundle-replay", expect=15)

        with step("Refusal: the module edited after approval"):
            edited = WORK / "overlap_edited.py"
            edited.write_text(module.read_text() + "\n# exfiltrate here\n")
            other = submit_and_approve(module)
            verifier(other, edited, WORK / "bundle-edited", expect=16)
            console.print(f"nothing written: {not (WORK / 'bundle-edited').exists()}")

        with step("Audit log: every event hash-chained and signed"):
            cli(
                "jobruntime",
                "audit",
                "verify",
                "--trust-root",
                str(STATE / "trust-root.json"),
                "--emulator-state",
                str(STATE),
            )
    finally:
        emulator.stop()

    table = Table(title="Where the demo's time went")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for title, seconds in timings:
        table.add_row(title, f"{seconds:.2f}")
    table.add_row("[bold]total", f"[bold]{sum(s for _, s in timings):.2f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
