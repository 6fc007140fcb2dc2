"""``job-verifier``: flags or environment in, a bundle or a one-line refusal out.

Exit codes are the error classes' ``exit_code`` (see docs/verifier.md): 0 verified,
2 configuration, 10-18 one per numbered check, 20 control plane, 21 bundle write,
70 unexpected. The reason goes to the termination-message path, where Kubernetes
shows it as the container's termination message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.entrypoint import run_main
from jobruntime.errors import ConfigError, JobRuntimeError
from jobruntime.verification.pinned import DEV_ENV, anchors
from verifier.refusal import REPORT_TIMEOUT, refusal_of, report, termination_message
from verifier.run import VerifierConfig, verify_run

TERMINATION_LIMIT = 4096  # bytes Kubernetes keeps of a termination message

_FLAGS: list[tuple[str, str, str, str | None]] = [
    # flag, environment variable, help, default
    ("--run-id", "JOB_RUN_ID", "the run this pod was started for", None),
    (
        "--control-plane-url",
        "JOB_CONTROL_PLANE_URL",
        "base URL of the control plane (development mode only)",
        None,
    ),
    ("--token-file", "JOB_VERIFIER_TOKEN_FILE", "file holding the verifier's bearer token", None),
    (
        "--ca-bundle",
        "JOB_CA_BUNDLE",
        "CA bundle for the control plane (development mode only)",
        None,
    ),
    ("--trust-root", "JOB_TRUST_ROOT", "trust root (development mode only)", None),
    ("--module", "JOB_MODULE_PATH", "the job module file (development mode only)", None),
    ("--image-digest", "JOB_IMAGE_DIGEST", "digest of the image this pod runs", None),
    ("--output-dir", "JOB_BUNDLE_DIR", "memory-backed directory for the bundle", "/run/jobruntime"),
    (
        "--termination-log",
        "JOB_TERMINATION_LOG",
        "where the one-line reason goes",
        "/dev/termination-log",
    ),
    ("--clock-skew", "JOB_CLOCK_SKEW", "allowed clock skew in seconds (0-300)", "60"),
    (
        "--deadline",
        "JOB_CONTROL_PLANE_DEADLINE",
        "seconds to keep retrying the control plane",
        "60",
    ),
    ("--mode", "JOB_VERIFIER_MODE", "driver (claims the run) or executor", "driver"),
    ("--tee", "JOB_TEE", "evidence source: auto (hardware) or emulated", "auto"),
    ("--emulated-tee-dir", "JOB_EMULATED_TEE_DIR", "the emulated TEE (with --tee emulated)", None),
]
_OPTIONAL = {"--ca-bundle", "--token-file", "--emulated-tee-dir"}
_ANCHORS = {"--trust-root", "--control-plane-url", "--ca-bundle", "--module"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="job-verifier",
        description="Verify a signed job run before anything touches data. Every flag can "
        "also come from the environment variable named in its help. Outside development "
        f"mode ({DEV_ENV}=1) the trust root, job module and control plane come from the "
        "image, never from flags or the environment.",
    )
    for flag, env, text, default in _FLAGS:
        p.add_argument(flag, default=os.environ.get(env, default), help=f"{text} [${env}]")
    return p


def config_from(args: argparse.Namespace) -> VerifierConfig:
    pinned = anchors(
        "job-verifier",
        trust_root=args.trust_root,
        control_plane_url=args.control_plane_url,
        ca_bundle=args.ca_bundle,
        module=args.module,
    )
    missing = [
        f
        for f, _, _, _ in _FLAGS
        if getattr(args, f[2:].replace("-", "_")) is None and f not in _OPTIONAL | _ANCHORS
    ]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (flag or environment)")
    token = os.environ.get("JOB_VERIFIER_TOKEN")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {args.token_file}: {exc.strerror}") from None
    if not token:
        raise ConfigError("no bearer token: set --token-file or $JOB_VERIFIER_TOKEN")
    try:
        skew, deadline = float(args.clock_skew), float(args.deadline)
    except ValueError:
        raise ConfigError("--clock-skew and --deadline take seconds") from None
    return VerifierConfig(
        run_id=args.run_id,
        control_plane_url=pinned.control_plane_url,
        token=token,
        trust_root=pinned.trust_root,
        module_path=pinned.module,
        image_digest=args.image_digest,
        output_dir=Path(args.output_dir),
        termination_log=Path(args.termination_log),
        ca_bundle=pinned.ca_bundle,
        clock_skew=timedelta(seconds=skew),
        deadline=deadline,
        mode=_mode(args.mode),
        tee=args.tee,
        emulated_tee_dir=Path(args.emulated_tee_dir) if args.emulated_tee_dir else None,
    )


def _mode(value: str) -> Literal["driver", "executor"]:
    if value == "driver":
        return "driver"
    if value == "executor":
        return "executor"
    raise ConfigError(f"--mode is driver or executor, not {value!r}")


def command(config: VerifierConfig, token_file: Path) -> list[str]:
    """The argv that runs job-verifier with this configuration (the token from a file)."""
    argv = [
        sys.executable,
        "-m",
        "verifier",
        "--run-id",
        config.run_id,
        "--control-plane-url",
        config.control_plane_url,
        "--token-file",
        str(token_file),
        "--trust-root",
        str(config.trust_root),
        "--image-digest",
        config.image_digest,
        "--output-dir",
        str(config.output_dir),
        "--termination-log",
        str(config.termination_log),
        "--clock-skew",
        str(config.clock_skew.total_seconds()),
        "--deadline",
        str(config.deadline),
        "--mode",
        config.mode,
        "--tee",
        config.tee,
    ]
    if config.module_path:
        argv += ["--module", str(config.module_path)]
    if config.ca_bundle:
        argv += ["--ca-bundle", str(config.ca_bundle)]
    if config.emulated_tee_dir:
        argv += ["--emulated-tee-dir", str(config.emulated_tee_dir)]
    return argv


def write_termination(path: Path, line: str) -> None:
    # Outside Kubernetes the path may not exist; stderr still has the line.
    with contextlib.suppress(OSError):
        path.write_bytes(line.encode()[:TERMINATION_LIMIT])


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    termination = Path(args.termination_log)
    refused: list[JobRuntimeError] = []

    def body() -> int:
        config = config_from(args)
        try:
            path = verify_run(config)
        except JobRuntimeError as exc:
            refused.append(exc)
            report_refusal(config, exc)
            raise
        print(f"job-verifier: verified {config.run_id}; bundle at {path}")
        return 0

    def on_failure(line: str) -> None:
        exc = refused[0] if refused else None
        write_termination(termination, termination_message(args.run_id, args.mode, line, exc))

    return run_main("job-verifier", body, on_failure=on_failure)


def report_refusal(config: VerifierConfig, exc: JobRuntimeError) -> None:
    """Tell the control plane why, within a few seconds, so ``runs status`` shows it."""
    with ControlPlaneClient(
        config.control_plane_url,
        config.token,
        ca_bundle=config.ca_bundle,
        retry_for=REPORT_TIMEOUT,
        timeout=REPORT_TIMEOUT,
    ) as client:
        report(client, config.run_id, refusal_of(exc, config.mode))
