"""HTTP to the control plane: deadlines, retries, TLS, size limits, typed refusals.

One transport under both clients: ``client.ControlPlaneClient`` (pydantic models, for
the tools, the verifier and tests) and ``pod.PodClient`` (plain JSON, for the pod's
sidecars). It is the standard library's ``http.client`` and ``ssl``, nothing more: a
sidecar pays for every module it imports for the pod's whole life, and requests (or
urllib3 alone) would be 3 to 7 MB of a 40 MB budget.

- A timeout on every connect and read.
- Retries, with exponential backoff (``backoff``, doubling, at most 2 s between tries)
  until ``retry_for`` seconds have passed: when no connection could be made (nothing
  was sent), and, for idempotent calls only, when the answer was lost or was 500, 502,
  503 or 504 (then the last such answer is the refusal). A non-idempotent call (a
  submit, an attest: its nonce is single-use) is sent at most once.
- TLS verified against the given CA bundle, or certifi's (as requests did), with the
  host name checked; a TLS failure is never retried. Nothing comes from the environment
  (no ``$HTTPS_PROXY``, no ``$REQUESTS_CA_BUNDLE``), and redirects are not followed (the
  API has none, and one would carry the bearer token elsewhere).
- Answers are read up to a limit; refusals become typed errors (:func:`refusal`).
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jobruntime.attestation.errors  # noqa: F401 - registers the codes mapped below
from jobruntime.errors import (
    AttestationError,
    AuthError,
    ClaimError,
    ClaimReplayedError,
    ConfigError,
    ControlPlaneError,
    ControlPlaneUnavailableError,
    JobRuntimeError,
    NotFoundError,
    RunCancelledError,
    SpecTooLargeError,
    all_error_types,
)
from jobruntime.spec.codec import MAX_SPEC_BYTES

API_PREFIX = "/v1"
USER_AGENT = "jobruntime-client/1"
RETRY_STATUSES = frozenset({500, 502, 503, 504})
BACKOFF_MAX = 2.0
CHUNK = 64 * 1024

_CONTEXTS: dict[str, ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()

_CLAIM_REFUSALS: dict[str, type[ClaimError]] = {
    "claim.replayed": ClaimReplayedError,
    "claim.cancelled": RunCancelledError,
    "claim.not_approved": ClaimError,
}


def _attestation_refusal(code: str) -> type[AttestationError]:
    """The attestation error class for a refusal's code, looked up when it is needed:
    the registry fills as modules are imported, so a table built at import time would
    miss the classes of modules imported later."""
    for cls in all_error_types():
        if issubclass(cls, AttestationError) and cls.code == code:
            return cls
    return AttestationError


def segment(value: str) -> str:
    """One path parameter, percent-encoded whole (``/`` and ``..`` included): a run id or
    key id can never name another route, however an intermediary normalises paths."""
    return quote(value, safe="")


class _Unsent(Exception):
    """No connection: nothing was sent, so any call may be tried again."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class _Lost(Exception):
    """The request may have been sent but no whole answer came back."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class Transport:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        ca_bundle: Path | None = None,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        backoff: float = 0.2,
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"control-plane URL {self.url!r} is not http(s)://host[:port]")
        self._https = parts.scheme == "https"
        try:
            self._host, self._port = parts.hostname, parts.port
        except ValueError:
            raise ConfigError(f"control-plane URL {self.url!r} has an invalid port") from None
        self._prefix = parts.path + API_PREFIX
        self.retry_for = retry_for
        self._timeout = timeout
        self._backoff = backoff
        self._headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self._ca_bundle = ca_bundle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        limit: int = 64 * MAX_SPEC_BYTES,
        idempotent: bool = True,
        body: Any = None,
    ) -> bytes:
        """The answer's body for a 2xx; a typed error for a refusal or no answer."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        what = f"{method} {path}"
        deadline = time.monotonic() + self.retry_for
        failures = 0
        while True:
            retry_after: float | None = None
            try:
                status, answer, retry_after = self._once(
                    method, self._prefix + path, data, headers, limit, what
                )
            except ssl.SSLError:  # before OSError, which it is: never retried
                raise ControlPlaneUnavailableError(
                    f"TLS verification of {self.url} failed"
                ) from None
            except (_Unsent, _Lost) as exc:
                if isinstance(exc, _Lost) and not idempotent:
                    raise self._unreachable(exc) from None
                failure: Exception | tuple[int, bytes] = exc
            else:
                if not (idempotent and status in RETRY_STATUSES):
                    break
                failure = (status, answer)
            failures += 1
            if time.monotonic() >= deadline:
                if isinstance(failure, tuple):
                    status, answer = failure
                    break
                raise self._unreachable(failure) from None
            pause = min(BACKOFF_MAX, self._backoff * 2 ** (failures - 1)) if failures > 1 else 0
            if isinstance(failure, tuple) and retry_after is not None:
                pause = max(0.0, min(retry_after, deadline - time.monotonic()))
            time.sleep(pause)
        if status >= 300:
            raise refusal(status, answer, what)
        return answer

    def _once(
        self,
        method: str,
        target: str,
        data: bytes | None,
        headers: dict[str, str],
        limit: int,
        what: str,
    ) -> tuple[int, bytes, float | None]:
        conn = self._connection()
        keep = False
        try:
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                status = resp.status
                chunks, size = [], 0
                while chunk := resp.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise SpecTooLargeError(f"{what}: answer is over the {limit}-byte limit")
                    chunks.append(chunk)
            except JobRuntimeError:
                raise
            except http.client.InvalidURL:  # ours to fix, not the network's: never retried
                raise ConfigError(f"{what}: not a valid request target") from None
            except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError included:
                raise _Lost(exc) from None  # the handshake, and its checks, were in connect
            keep = not resp.will_close
            return status, b"".join(chunks), _seconds(resp.getheader("Retry-After"))
        finally:
            if keep:
                with self._lock:
                    self._idle.append(conn)
            else:
                conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        """An idle connection the server has not closed, or a new one, connected."""
        while True:
            with self._lock:
                idle = self._idle.pop() if self._idle else None
            if idle is None:
                break
            if idle.sock is not None and not _readable(idle.sock):
                return idle
            idle.close()  # closed by the server (or it sent what nobody asked for)
        conn: http.client.HTTPConnection
        if self._https:
            cafile = str(self._ca_bundle) if self._ca_bundle else _certifi()
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=tls_context(cafile)
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.connect()  # TCP, then for https the TLS handshake and its checks
        except ssl.SSLError:
            conn.close()
            raise
        except OSError as exc:
            conn.close()
            raise _Unsent(exc) from None
        return conn

    def _unreachable(self, exc: Exception) -> ControlPlaneUnavailableError:
        return ControlPlaneUnavailableError(
            f"control plane at {self.url} unreachable for {self.retry_for:.0f}s ({exc})"
        )


def tls_context(cafile: str) -> ssl.SSLContext:
    """Certificate and host name checked, against ``cafile`` only; one per file and process.

    Shared: every context costs OpenSSL a copy of the CA certificates (over 1 MB for
    certifi's), and a sidecar holds several clients.
    """
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(cafile)
        if context is None:
            try:
                context = ssl.create_default_context(cafile=cafile)
            except (OSError, ValueError) as exc:  # ssl.SSLError: not a PEM bundle
                raise ConfigError(f"cannot use CA bundle {cafile}: {exc}") from None
            _CONTEXTS[cafile] = context
        return context


def _certifi() -> str:
    import certifi

    return str(certifi.where())


def _readable(sock: Any) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def refusal(status: int, body: bytes, what: str) -> JobRuntimeError:
    code, message = f"http.{status}", f"HTTP {status}"
    try:
        err = json.loads(body)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        pass
    text = f"{what}: {message} ({code})"
    if status >= 500:
        return ControlPlaneUnavailableError(text, status, code)
    if code in _CLAIM_REFUSALS:
        return _CLAIM_REFUSALS[code](message)
    if code.startswith("attestation."):
        # The control plane judged our evidence: fail as attestation, with its code.
        return _attestation_refusal(code)(f"{message} ({code})")
    if status in (401, 403):
        return AuthError(text, status, code)
    if status == 404:
        return NotFoundError(text, status, code)
    return ControlPlaneError(text, status, code)
