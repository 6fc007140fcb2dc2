"""Azurite, the Azure Storage emulator, for tests: started here, on 127.0.0.1, and stopped.

Installed from the repository's ``package.json`` (``npm ci``; azurite is pinned to 3.35.0,
the newest that runs on Node 20). It listens on port 0 and we read the port it got from
its start-up line, so parallel sessions never race for a port. It keeps blobs in memory
(``--inMemoryPersistence`` refuses ``--location``, so its working directory is a temp
dir instead) and is started with ``--skipApiVersionCheck`` because the Python SDK's
default API version is newer than Azurite 3.35 knows.

Use the session fixture ``azurite`` (import it into a conftest), or ``AzuriteProcess``
as a context manager from scripts.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobruntime.dev.process import ManagedProcess, ProcessStartError
from jobruntime.storage.azure import DEVSTORE_ACCOUNT_NAME, development_connection_string

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HINT = f"Azurite is not installed ({AZURITE_BIN} is missing): run `npm ci` in {REPO_ROOT}"
_LISTENING = re.compile(rb"listens on http://127\.0\.0\.1:(\d+)")


class AzuriteError(RuntimeError):
    """Azurite is missing, exited, or did not answer in time."""


class AzuriteProcess:
    """One Azurite blob service; ``start()`` returns once it answers HTTP."""

    def __init__(self, workdir: Path, binary: Path = AZURITE_BIN) -> None:
        self.workdir = workdir
        self.binary = binary
        self.port = 0
        self.proc: ManagedProcess | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{DEVSTORE_ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Explicit endpoint and the well-known key (the SDK's shorthand means port 10000)."""
        return development_connection_string(self.blob_endpoint)

    @property
    def log_path(self) -> Path:
        return self.workdir / "azurite.log"

    def start(self, timeout: float = 30.0) -> AzuriteProcess:
        if not self.binary.exists():
            raise AzuriteError(INSTALL_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), "--blobHost", "127.0.0.1", "--blobPort", "0"]
        cmd += ["--inMemoryPersistence", "--extentMemoryLimit", "512"]
        cmd += ["--disableTelemetry", "--skipApiVersionCheck", "--silent"]
        self.proc = ManagedProcess("azurite", cmd, self.log_path, cwd=self.workdir).start()
        try:
            deadline = time.monotonic() + timeout
            self.port = self._wait_for_port(deadline)
            self._wait_until_answering(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _fail(self, why: str) -> AzuriteError:
        tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
        return AzuriteError(f"Azurite {why}; its output:\n{tail}")

    def _wait_for_port(self, deadline: float) -> int:
        assert self.proc is not None

        def port() -> int | None:
            found = _LISTENING.search(self.log_path.read_bytes())
            return int(found.group(1)) if found else None

        try:
            return self.proc.wait_ready(port, deadline - time.monotonic(), "listening port")
        except ProcessStartError as exc:
            raise self._fail(exc.message) from None

    def _wait_until_answering(self, deadline: float) -> None:
        url = f"{self.blob_endpoint}?comp=list"
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 (our own loopback URL)
                return
            except urllib.error.HTTPError:  # any HTTP answer (403 without auth) will do
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise self._fail("did not answer HTTP in time") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.proc = None

    def __enter__(self) -> AzuriteProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteProcess]:
    """A running Azurite for the whole session; fails (never skips) if it is not installed."""
    if not AZURITE_BIN.exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    with AzuriteProcess(tmp_path_factory.mktemp("azurite")) as server:
        yield server
