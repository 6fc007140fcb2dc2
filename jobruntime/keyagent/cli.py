"""``python -m jobruntime.keyagent``: the key-agent sidecar's entrypoint.

Exit codes are the error classes' ``exit_code``: 0 after a clean SIGTERM/SIGINT,
2 configuration, 22 key agent (unsafe directory, socket in use), 70 unexpected.
A refusal is one line on stderr; the socket file is removed on the way out.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from jobruntime.entrypoint import run_main
from jobruntime.errors import ConfigError
from jobruntime.keyagent.listener import prepare_socket_path
from jobruntime.keyagent.secretfile import write_spark_secret
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import KeySource, StaticKeySource

log = logging.getLogger("jobruntime.keyagent")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobruntime.keyagent",
        description="Serve the verified run's dataset keys to processes of this uid "
        "over a Unix socket on a memory-backed volume.",
    )
    env = os.environ.get
    p.add_argument(
        "--socket",
        type=Path,
        default=env("JOB_KEYAGENT_SOCKET"),
        help="socket path in the shared tmpfs volume [$JOB_KEYAGENT_SOCKET]",
    )
    p.add_argument(
        "--bundle-dir",
        type=Path,
        default=env("JOB_BUNDLE_DIR"),
        help="directory of the verifier's verified-bundle.json; its spec's "
        "datasets are the only ones served [$JOB_BUNDLE_DIR]",
    )
    p.add_argument(
        "--insecure-disk-socket",
        action="store_true",
        help="allow a socket directory that is not tmpfs/ramfs (local work only)",
    )
    p.add_argument(
        "--control-plane-url",
        default=env("JOB_CONTROL_PLANE_URL"),
        help="the KMS's control plane (development mode only) [$JOB_CONTROL_PLANE_URL]",
    )
    p.add_argument(
        "--trust-root",
        type=Path,
        default=env("JOB_TRUST_ROOT"),
        help="trust root the bundle is re-verified against (development mode only) "
        "[$JOB_TRUST_ROOT]",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=env("JOB_VERIFIER_TOKEN_FILE"),
        help="the pod's bearer token [$JOB_VERIFIER_TOKEN_FILE]",
    )
    p.add_argument(
        "--ca-bundle",
        type=Path,
        default=env("JOB_CA_BUNDLE"),
        help="(development mode only) [$JOB_CA_BUNDLE]",
    )
    p.add_argument(
        "--tee",
        default=env("JOB_TEE", "auto"),
        help="evidence source: auto (hardware) or emulated [$JOB_TEE]",
    )
    p.add_argument(
        "--emulated-tee-dir",
        type=Path,
        default=env("JOB_EMULATED_TEE_DIR"),
        help="the emulated TEE, with --tee emulated [$JOB_EMULATED_TEE_DIR]",
    )
    p.add_argument(
        "--spark-secret-file",
        type=Path,
        default=env("JOB_SPARK_SECRET_FILE"),
        help="where to write the run's Spark authentication secret (0400, in the memory "
        "volume), released by the KMS to this attested agent [$JOB_SPARK_SECRET_FILE]",
    )
    p.add_argument(
        "--static-keys",
        type=Path,
        help="DEVELOPMENT ONLY, NOT FOR PRODUCTION: JSON {dataset: base64 key} "
        "served without attestation or KMS",
    )
    p.add_argument(
        "--log-level",
        default=env("JOB_KEYAGENT_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="[$JOB_KEYAGENT_LOG_LEVEL]",
    )
    return p


def make_source(args: argparse.Namespace) -> KeySource:
    """The KMS-backed source (attested release), or development keys if asked for.

    The KMS source re-verifies the bundle against the pinned trust root, attests once
    now (so a pod that cannot attest fails at start, not at its first read), and
    releases each dataset the verified spec names at most once, on first request.
    """
    if args.static_keys is not None:
        return static_source(args)
    return kms_source(args)


def static_source(args: argparse.Namespace) -> KeySource:
    """DEVELOPMENT ONLY: keys from a file; with a bundle, narrowed to its verified spec."""
    from jobruntime.keyagent.kms_source import grants_of
    from jobruntime.verification.pinned import DEV_ENV, dev_mode
    from jobruntime.verification.sidecar import load_sidecar_bundle

    if not dev_mode():
        raise ConfigError(
            f"--static-keys is for development mode only: it serves keys from a file ({DEV_ENV}=1)"
        )
    log.warning("serving static development keys from %s: NOT FOR PRODUCTION", args.static_keys)
    if args.bundle_dir is None:
        return StaticKeySource.from_json_file(args.static_keys)
    _, bundle = load_sidecar_bundle(
        "keyagent", args.bundle_dir, trust_root=args.trust_root, needs_control_plane=False
    )
    grants = grants_of(bundle.verified.spec)
    return StaticKeySource.from_json_file(
        args.static_keys,
        allowed=grants,
        writable=[n for n, g in grants.items() if g.writable],
        key_ids={n: g.key_id for n, g in grants.items() if g.key_id},
    )


def kms_source(args: argparse.Namespace) -> KeySource:
    from jobruntime.attestation.providers.choose import provider_for
    from jobruntime.controlplane.pod import PodClient
    from jobruntime.controlplane.transport import Transport
    from jobruntime.keyagent.kms_source import KmsKeySource, grants_of
    from jobruntime.keyrelease.session import AttestedSession
    from jobruntime.verification.sidecar import load_sidecar_bundle

    if args.bundle_dir is None or args.token_file is None:
        raise ConfigError("the KMS source needs --bundle-dir and --token-file")
    try:
        token = Path(args.token_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.token_file}: {exc.strerror}") from None
    pinned, bundle = load_sidecar_bundle(
        "keyagent",
        args.bundle_dir,
        trust_root=args.trust_root,
        control_plane_url=args.control_plane_url,
        ca_bundle=args.ca_bundle,
    )
    client = PodClient(Transport(pinned.control_plane_url, token, ca_bundle=pinned.ca_bundle))
    session = AttestedSession(
        client, bundle.identity, provider_for(args.tee, args.emulated_tee_dir), "key-agent"
    )
    answer = session.attest()
    if args.spark_secret_file is not None:
        write_spark_secret(
            args.spark_secret_file, session.spark_secret(), memory_fs=not args.insecure_disk_socket
        )
    source = KmsKeySource(session, grants_of(bundle.verified.spec))
    log.info(
        "attested %s (%s evidence); serving %d datasets",
        bundle.run_id,
        answer.evidence_kind,
        len(source.grants),
    )
    return source


def serve(args: argparse.Namespace) -> None:
    """Run until SIGTERM or SIGINT, then close (removing the socket and zeroing keys)."""
    if args.socket is None:
        raise ConfigError("missing --socket (or $JOB_KEYAGENT_SOCKET)")
    stop = threading.Event()
    server: KeyAgentServer | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if server is not None:
            server.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # A socket it could not listen on is refused before attesting: a pod has one
    # key-agent session, and a refusal after it would have used it up.
    prepare_socket_path(args.socket, memory_fs=not args.insecure_disk_socket)
    source = make_source(args)
    if args.insecure_disk_socket:
        log.warning("--insecure-disk-socket: the socket directory may be on a disk")
    server = KeyAgentServer(args.socket, source, require_memory_fs=not args.insecure_disk_socket)
    try:
        if stop.is_set():  # a signal came while starting
            server.stop()
        server.serve_forever()
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    def body() -> int:
        serve(args)
        return 0

    return run_main("keyagent", body)
