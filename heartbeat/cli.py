"""``python -m heartbeat``: the sidecar's entrypoint; flags or JOB_* environment.

What it imports at start is what every driver pod pays for its whole life: nothing
here or in ``sidecar`` imports pydantic, requests or the Azure SDK (the Service Bus
transport imports the latter when chosen); tests/test_sidecar_imports.py holds it so.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from heartbeat.progress import SparkProgress
from heartbeat.sidecar import MAX_INTERVAL, Sidecar, SidecarSettings, Transport
from heartbeat.transports.http import HttpTransport
from jobruntime.attestation.providers.choose import provider_for
from jobruntime.controlplane.pod import PodClient
from jobruntime.controlplane.transport import Transport as Http
from jobruntime.entrypoint import run_main
from jobruntime.errors import ConfigError
from jobruntime.keyrelease.session import AttestedSession
from jobruntime.verification.pinned import anchors
from jobruntime.verification.sidecar import SidecarBundle


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m heartbeat")
    p.add_argument("--bundle-dir", type=Path, default=env("JOB_BUNDLE_DIR"))
    p.add_argument(
        "--control-plane-url",
        default=env("JOB_CONTROL_PLANE_URL"),
        help="development mode only [$JOB_CONTROL_PLANE_URL]",
    )
    p.add_argument(
        "--trust-root",
        default=env("JOB_TRUST_ROOT"),
        help="development mode only [$JOB_TRUST_ROOT]",
    )
    p.add_argument("--token-file", type=Path, default=env("JOB_VERIFIER_TOKEN_FILE"))
    p.add_argument(
        "--ca-bundle", default=env("JOB_CA_BUNDLE"), help="development mode only [$JOB_CA_BUNDLE]"
    )
    p.add_argument("--tee", default=env("JOB_TEE", "auto"))
    p.add_argument("--emulated-tee-dir", type=Path, default=env("JOB_EMULATED_TEE_DIR"))
    p.add_argument("--interval", type=float, default=float(env("JOB_HEARTBEAT_INTERVAL", "10")))
    p.add_argument("--spark-ui", default=env("JOB_SPARK_UI", "http://127.0.0.1:4040"))
    p.add_argument(
        "--transport",
        choices=["http", "servicebus"],
        default=env("JOB_HEARTBEAT_TRANSPORT", "http"),
    )
    p.add_argument(
        "--wait-for-stop",
        action="store_true",
        default=env("JOB_HEARTBEAT_WAIT_FOR_STOP") == "1",
        help="after the final heartbeat, wait to be stopped instead of exiting (a native "
        "sidecar on Kubernetes is restarted when it exits) [$JOB_HEARTBEAT_WAIT_FOR_STOP=1]",
    )
    p.add_argument(
        "--servicebus-env",
        default="JOB_SERVICEBUS_CONNECTION",
        help="the variable holding the Service Bus connection string (never a flag)",
    )
    return p


def command(
    bundle_dir: Path,
    url: str,
    token_file: Path,
    emulated_tee_dir: Path,
    interval: float,
    *,
    trust_root: Path,
    transport: str = "http",
    spark_ui: str | None = None,
) -> list[str]:
    """The argv of a development-mode sidecar on the emulated TEE (local runs, tests)."""
    argv = [
        sys.executable,
        "-m",
        "heartbeat",
        "--bundle-dir",
        str(bundle_dir),
        "--control-plane-url",
        url,
        "--trust-root",
        str(trust_root),
        "--token-file",
        str(token_file),
        "--tee",
        "emulated",
        "--emulated-tee-dir",
        str(emulated_tee_dir),
        "--interval",
        str(interval),
        "--transport",
        transport,
    ]
    return argv + (["--spark-ui", spark_ui] if spark_ui else [])


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="heartbeat: %(message)s", stream=sys.stderr)
    args = parser().parse_args(argv)

    def body() -> int:
        if not (args.bundle_dir and args.token_file):
            raise ConfigError("needs --bundle-dir and --token-file")
        if not 0 < args.interval <= MAX_INTERVAL:
            raise ConfigError(f"--interval must be over 0 and at most {MAX_INTERVAL:g} seconds")
        pinned = anchors(
            "heartbeat",
            trust_root=args.trust_root,
            control_plane_url=args.control_plane_url,
            ca_bundle=args.ca_bundle,
        )
        token = args.token_file.read_text().strip()

        def client() -> PodClient:
            # Short per-call retries: the sidecar's own backlog absorbs outages.
            return PodClient(
                Http(
                    pinned.control_plane_url,
                    token,
                    ca_bundle=pinned.ca_bundle,
                    retry_for=min(5.0, args.interval),
                    timeout=5.0,
                )
            )

        provider = provider_for(args.tee, args.emulated_tee_dir)

        def session_for(bundle: SidecarBundle) -> AttestedSession:
            return AttestedSession(client(), bundle.identity, provider, purpose="heartbeat")

        def transport_for(bundle: SidecarBundle) -> Transport:
            if args.transport == "servicebus":
                from heartbeat.transports.bus import ServiceBusHeartbeats

                conn = os.environ.get(args.servicebus_env)
                if not conn:
                    raise ConfigError(f"${args.servicebus_env} is not set")
                return ServiceBusHeartbeats(conn, bundle.run_id)
            return HttpTransport(client(), bundle.run_id)

        sidecar = Sidecar(
            SidecarSettings(
                args.bundle_dir,
                pinned.trust_root,
                args.interval,
                wait_for_stop=args.wait_for_stop,
            ),
            session_for,
            transport_for,
            SparkProgress(args.spark_ui),
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            sidecar.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        return sidecar.run()

    return run_main("heartbeat", body)
