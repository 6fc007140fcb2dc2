"""A storage call hangs past the Azure SDK's read timeout: the storage client's retry
policy (``AzureBlobStorage``: the SDK's ``ExponentialRetry``, 5 retries) sends it again on
a new connection and the owner's encrypt and decrypt of a dataset on Azure succeed.

The hang is real: a proxy in front of the session's Azurite accepts the connection,
reads the request and never answers (it never reaches Azurite). The client's retry
policy is used as shipped; the read timeout is the operator's setting
(``$JOBRUNTIME_AZURE_READ_TIMEOUT``) at 10 s instead of the SDK's 60 s, so each stall
lasts 10 s (tests/storage/test_uri.py checks the default and the setting).
"""

from __future__ import annotations

import secrets
import time

import pytest

from jobruntime.storage.azure import development_connection_string
from jobruntime.storage.uri import READ_TIMEOUT_ENV, open_storage
from tests.azurite import AzuriteProcess
from tests.faults.proxy import StallingProxy
from tests.test_e2e import World, encrypt

pytestmark = pytest.mark.slow

READ_TIMEOUT = 10


def test_a_storage_call_that_times_out_is_retried_and_the_write_and_read_succeed(
    world: World, azurite: AzuriteProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StallingProxy(azurite.port) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}/devstoreaccount1"
        monkeypatch.setenv(
            "JOBRUNTIME_AZURE_CONNECTION_STRING", development_connection_string(endpoint)
        )
        monkeypatch.setenv(READ_TIMEOUT_ENV, str(READ_TIMEOUT))
        uri = f"az://faults{secrets.token_hex(4)}/customers"
        key_id = f"org-a/timeout-{secrets.token_hex(3)}"

        # The write: its first storage call hangs.
        proxy.stall_next(1)
        started = time.monotonic()
        encrypt(world.emu, world.a, uri, key_id)
        took = time.monotonic() - started
        assert (proxy.stalled, proxy.given_up) == (1, 1)  # one call hung, the client gave up
        assert proxy.stalled_bytes > 0  # a request was sent into the stall
        assert took >= READ_TIMEOUT - 1  # it waited out the read timeout, then retried
        assert proxy.forwarded >= 1  # and the retry went through to Azurite

        # The read: its first storage call hangs too.
        proxy.stall_next(1)
        table = world.decrypt(uri, key_id)
        assert (proxy.stalled, proxy.given_up) == (2, 2)
        assert sorted(table.column("email").to_pylist()) == sorted(world.a["email"])

        # Exactly one version: the retried calls published nothing twice.
        names = [o.path for o in open_storage(uri).list("_manifests/")]
        assert names == ["_manifests/v000001.json"]
