"""Azurite restarts while an owner writes a dataset to it, part by part.

- Blobs kept on disk (a restart, as a real storage front end restarts): the SDK's retries
  carry the write across the outage, the parts staged before it are still there and
  still match their digests, and exactly one complete version is published.
- Blobs kept in memory (the suite's own Azurite flavour; behind a proxy, so the new port
  stays reachable): the restart loses what was staged. The write must then fail with a
  typed error and publish nothing, neither in storage nor at the control plane.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from jobruntime.dataset import owner
from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.dataset.registry import ControlPlaneRegistry
from jobruntime.dev.process import ManagedProcess
from jobruntime.dev.submit import DEV_POLICY
from jobruntime.errors import JobRuntimeError
from jobruntime.storage.azure import development_connection_string
from jobruntime.storage.uri import open_storage
from tests.azurite import AzuriteProcess
from tests.faults.proxy import StallingProxy
from tests.test_e2e import World

pytestmark = pytest.mark.slow

ROWS_PER_FILE = 100  # 600 rows: 6 parts


class PersistentAzurite(AzuriteProcess):
    """Azurite with its blobs on disk and, from the second start on, the same port."""

    def start(self, timeout: float = 30.0) -> AzuriteProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port)]
        cmd += ["--location", str(self.workdir / "data")]
        cmd += ["--disableTelemetry", "--skipApiVersionCheck", "--silent"]
        # A fresh log each start: the port is read from this start's line.
        self.proc = ManagedProcess("azurite", cmd, self.log_path, cwd=self.workdir).start()
        try:
            deadline = time.monotonic() + timeout
            self.port = self._wait_for_port(deadline)
            self._wait_until_answering(deadline)
        except BaseException:
            self.stop()
            raise
        return self


def write_with_restart(
    world: World, uri: str, key_id: str, restart: Callable[[threading.Event], None]
) -> None:
    """The owner's encrypt of ``world.a``; after two parts the server restarts, and the
    third part is not written before the server has gone down."""
    down = threading.Event()
    fired: list[threading.Thread] = []

    def progress(rows: int) -> None:
        if rows == 2 * ROWS_PER_FILE and not fired:
            fired.append(threading.Thread(target=restart, args=(down,), daemon=True))
            fired[0].start()
            assert down.wait(60), "the server did not go down"

    table = pa.Table.from_pandas(world.a, preserve_index=False)
    batches: Iterator[pa.RecordBatch] = iter(table.to_batches(max_chunksize=50))
    with world.emu.client("owner:org-a") as c:
        c.create_key(key_id, DEV_POLICY)
        key = c.owner_key(key_id)
        try:
            owner.encrypt(
                table.schema,
                batches,
                open_storage(uri),
                uri,
                LocalMasterKey(key_id, key),
                ControlPlaneRegistry(c, uri, key_id),
                rows_per_file=ROWS_PER_FILE,
                progress=progress,
            )
        finally:
            for t in fired:
                t.join(60)
    world.keys[key_id] = key
    assert fired, "the write never reached the restart point"


def test_a_persistent_azurite_restarted_mid_write_publishes_one_complete_version(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = PersistentAzurite(tmp_path / "azurite").start()
    try:
        port = server.port
        monkeypatch.setenv("JOBRUNTIME_AZURE_CONNECTION_STRING", server.connection_string)
        uri = f"az://restart{secrets.token_hex(4)}/customers"
        key_id = f"org-a/azurite-restart-{secrets.token_hex(3)}"

        def restart(down: threading.Event) -> None:
            server.stop()
            down.set()
            server.start()

        write_with_restart(world, uri, key_id, restart)
        assert server.port == port
        storage = open_storage(uri)
        assert [o.path for o in storage.list("_manifests/")] == ["_manifests/v000001.json"]
        assert not storage.list("_staging/")
        table = world.decrypt(uri, key_id)
        assert sorted(table.column("email").to_pylist()) == sorted(world.a["email"])
    finally:
        server.stop()


def test_an_in_memory_azurite_restarted_mid_write_fails_the_write_and_publishes_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = AzuriteProcess(tmp_path / "azurite").start()
    proxy = StallingProxy(server.port)
    try:
        endpoint = f"http://127.0.0.1:{proxy.port}/devstoreaccount1"
        connection = development_connection_string(endpoint)
        monkeypatch.setenv("JOBRUNTIME_AZURE_CONNECTION_STRING", connection)
        uri = f"az://restart{secrets.token_hex(4)}/customers"
        key_id = f"org-a/azurite-lost-{secrets.token_hex(3)}"

        def restart(down: threading.Event) -> None:
            server.stop()
            down.set()
            server.start()  # a new, empty server on a new port
            proxy.retarget(server.port)

        with pytest.raises(JobRuntimeError) as info:
            write_with_restart(world, uri, key_id, restart)
        # The commit finds the first staged part gone (it was in the old server's memory).
        assert info.value.code == "storage.not_found", info.value.code
        assert "_staging/" in info.value.message
        assert not open_storage(uri).list("_manifests/")
        with world.emu.client("owner:org-a") as c:
            assert ControlPlaneRegistry(c, uri, key_id).latest() is None
    finally:
        proxy.close()
        server.stop()
