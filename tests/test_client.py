"""The control-plane client: deadlines, retries, refusals, TLS, against real servers."""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.errors import (
    AuthError,
    ClaimError,
    ClaimReplayedError,
    ControlPlaneError,
    ControlPlaneUnavailableError,
    NotFoundError,
    RunCancelledError,
    SpecTooLargeError,
)
from jobruntime.spec.models import utcnow
from tests.conftest import Runs
from tests.sessions import client_session

ROOT = Path(__file__).resolve().parent.parent
HEALTH = json.dumps({"status": "ok", "principal": "tester"}).encode()


# --- a scripted HTTP server ---------------------------------------------------------------


@dataclass
class Scripted:
    """Answers each request with the next (status, body) of its script; the last repeats."""

    script: list[tuple[int, bytes]]
    seen: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def next(self) -> tuple[int, bytes]:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


@pytest.fixture
def scripted() -> Iterator[Callable[[list[tuple[int, bytes]]], Scripted]]:
    servers: list[ThreadingHTTPServer] = []

    def start(script: list[tuple[int, bytes]]) -> Scripted:
        state = Scripted(list(script))

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                state.seen.append((self.command, self.path))
                status, body = state.next()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *_: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A port of 127.0.0.1 that is bound (so nobody else takes it) but never listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# --- deadlines and retries ------------------------------------------------------------------


@pytest.mark.parametrize("retry_for", [0.5, 1.0])
def test_nothing_listening_gives_up_after_the_deadline(dead_url: str, retry_for: float) -> None:
    client = ControlPlaneClient(dead_url, "t", retry_for=retry_for, backoff=0.1, timeout=2)
    start = time.monotonic()
    with client, pytest.raises(ControlPlaneUnavailableError) as info:
        client.health()
    took = time.monotonic() - start
    assert retry_for <= took < retry_for + 3
    assert dead_url in info.value.message
    assert "unreachable" in info.value.message


def test_default_backoff_also_respects_the_deadline(dead_url: str) -> None:
    with ControlPlaneClient(dead_url, "t", retry_for=1.0) as client:
        start = time.monotonic()
        with pytest.raises(ControlPlaneUnavailableError):
            client.status("run-abcdef")
        assert 1.0 <= time.monotonic() - start < 4.0


def test_retries_5xx_then_succeeds(scripted: Callable[..., Scripted]) -> None:
    server = scripted([(503, b"busy"), (503, b"busy"), (200, HEALTH)])
    with ControlPlaneClient(server.url, "t", retry_for=5, backoff=0.05) as client:
        health = client.health()
    assert (health.status, health.principal) == ("ok", "tester")
    assert server.seen == [("GET", "/v1/health")] * 3


def test_always_500_is_unavailable(scripted: Callable[..., Scripted]) -> None:
    body = json.dumps({"error": {"code": "boom", "message": "broken"}}).encode()
    server = scripted([(500, body)])
    with ControlPlaneClient(server.url, "t", retry_for=1.0, backoff=0.05) as client:
        start = time.monotonic()
        with pytest.raises(ControlPlaneUnavailableError) as info:
            client.health()
        took = time.monotonic() - start
    assert 1.0 <= took < 4.0
    assert len(server.seen) > 2
    assert info.value.status == 500


def test_submit_is_not_retried_on_5xx(scripted: Callable[..., Scripted], runs: Runs) -> None:
    """POST /runs is not idempotent: a 503 after the request was sent is final."""
    server = scripted([(503, b"busy"), (201, b"{}")])
    with (
        ControlPlaneClient(server.url, "t", retry_for=5, backoff=0.05) as client,
        pytest.raises(ControlPlaneUnavailableError),
    ):
        client.submit(runs.request())
    assert server.seen == [("POST", "/v1/runs")]


def test_4xx_is_not_retried(scripted: Callable[..., Scripted]) -> None:
    body = json.dumps({"error": {"code": "auth.invalid", "message": "nope"}}).encode()
    server = scripted([(401, body), (200, HEALTH)])
    with (
        ControlPlaneClient(server.url, "t", retry_for=5) as client,
        pytest.raises(AuthError) as info,
    ):
        client.health()
    assert (info.value.status, info.value.remote_code) == (401, "auth.invalid")
    assert len(server.seen) == 1


def test_answer_of_the_wrong_shape(scripted: Callable[..., Scripted]) -> None:
    server = scripted([(200, b'{"status": "ok"}')])
    with (
        ControlPlaneClient(server.url, "t", retry_for=1) as client,
        pytest.raises(ControlPlaneError, match="not a Health"),
    ):
        client.health()


def test_oversized_answer_is_refused(scripted: Callable[..., Scripted]) -> None:
    server = scripted([(200, b" " * (4 * 1024 * 1024 + 1))])
    with (
        ControlPlaneClient(server.url, "t", retry_for=1) as client,
        pytest.raises(SpecTooLargeError),
    ):
        client.signed_run_bytes("run-abcdef")


# --- refusals of the real emulator become typed errors -------------------------------------


def test_refusals_are_typed(emulator: EmulatorProcess, runs: Runs) -> None:
    with (
        ControlPlaneClient(emulator.url, "wrong", retry_for=1) as c,
        pytest.raises(AuthError) as auth,
    ):
        c.health()
    assert (auth.value.status, auth.value.remote_code) == (401, "auth.invalid")

    with emulator.client("operator") as c, pytest.raises(NotFoundError):
        c.status("run-does-not-exist")

    # A driver's verifier attests before it claims; the claim's refusals come back typed
    # from either step.
    pending = runs.submit()
    with emulator.client("verifier") as c, pytest.raises(ClaimError) as not_approved:
        client_session(emulator, c, pending).attest()
    assert type(not_approved.value) is ClaimError

    claimed = runs.approved()
    with emulator.client("verifier") as c:
        first = client_session(emulator, c, claimed)
        first.attest()
        c.claim(claimed, secrets.token_hex(32), first.token)
        with pytest.raises(ClaimReplayedError):
            c.claim(claimed, secrets.token_hex(32), first.token)
        with pytest.raises(ClaimReplayedError):
            client_session(emulator, c, claimed).attest()
        with pytest.raises(AuthError) as no_session:
            c.claim(claimed, secrets.token_hex(32), "made-up")
    assert no_session.value.remote_code == "kms.session_invalid"

    cancelled = runs.approved()
    with emulator.client("operator") as c:
        assert c.cancel(cancelled, "no").state == "cancelled"
    with emulator.client("verifier") as c, pytest.raises(RunCancelledError):
        client_session(emulator, c, cancelled).attest()


# --- TLS ------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


TlsEmulator = EmulatorProcess


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    base = tmp_path_factory.mktemp("tls")
    with EmulatorProcess(base / "state", tls=self_signed(base)) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        yield emu


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests reads these; the tests below must not depend on the machine's settings."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_ca_env")
def test_tls_with_the_ca_bundle_works(tls_emulator: TlsEmulator, tmp_path: Path) -> None:
    token = tls_emulator.token("operator")
    with ControlPlaneClient(
        tls_emulator.url, token, ca_bundle=tls_emulator.cert, retry_for=5
    ) as client:
        assert client.health().principal == "operator"
        assert client.audit().entries == []
    # A whole submit goes over TLS too.
    runs = Runs(EmulatorProcess(tls_emulator.state), tmp_path)
    with ControlPlaneClient(
        tls_emulator.url, tls_emulator.token("submitter"), ca_bundle=tls_emulator.cert, retry_for=5
    ) as client:
        assert client.submit(runs.request()).state == "pending_approval"


def test_ca_bundle_wins_over_requests_environment(
    tls_emulator: TlsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other, _ = self_signed(tmp_path)  # a CA that did not sign the emulator's certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other))
    token = tls_emulator.token("operator")
    with ControlPlaneClient(
        tls_emulator.url, token, ca_bundle=tls_emulator.cert, retry_for=0.5
    ) as client:
        assert client.health().principal == "operator"


@pytest.mark.usefixtures("no_ca_env")
def test_tls_without_the_ca_bundle_fails(tls_emulator: TlsEmulator) -> None:
    token = tls_emulator.token("operator")
    with ControlPlaneClient(tls_emulator.url, token, retry_for=1) as client:
        start = time.monotonic()
        with pytest.raises(ControlPlaneUnavailableError) as info:
            client.health()
        took = time.monotonic() - start
    assert "TLS" in info.value.message
    assert tls_emulator.url in info.value.message
    assert took < 4


@pytest.mark.usefixtures("no_ca_env")
def test_tls_with_another_ca_fails(tls_emulator: TlsEmulator, tmp_path: Path) -> None:
    other, _ = self_signed(tmp_path)
    token = tls_emulator.token("operator")
    with (
        ControlPlaneClient(tls_emulator.url, token, ca_bundle=other, retry_for=1) as client,
        pytest.raises(ControlPlaneUnavailableError, match="TLS"),
    ):
        client.health()


@pytest.mark.usefixtures("no_ca_env")
def test_tls_verification_failure_is_not_retried(tls_emulator: TlsEmulator) -> None:
    token = tls_emulator.token("operator")
    with ControlPlaneClient(tls_emulator.url, token, retry_for=1.2) as client:
        start = time.monotonic()
        with pytest.raises(ControlPlaneUnavailableError, match="TLS"):
            client.health()
        assert time.monotonic() - start < 1.0


def test_path_parameters_are_one_encoded_segment(scripted: Callable[..., Scripted]) -> None:
    """Found in review: a key id with ``..`` reached other routes once ``..`` was sent as
    is; every path parameter is now percent-encoded whole."""
    server = scripted([(404, b'{"error": {"code": "kms.key_unknown", "message": "no"}}')])
    with ControlPlaneClient(server.url, "t", retry_for=0.5) as c, pytest.raises(NotFoundError):
        c.key_info("org-a/../../runs/x y")
    assert server.seen == [("GET", "/v1/kms/keys/org-a%2F..%2F..%2Fruns%2Fx%20y")]
