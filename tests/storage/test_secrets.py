"""Connection strings, account keys and SAS tokens never show in errors, reprs or logs."""

from __future__ import annotations

import base64
import functools
import logging
import socket
import traceback
from collections.abc import Callable

import pytest

from jobruntime.storage import StorageConfig, StorageConfigError, StorageError, open_storage
from jobruntime.storage.azure import DEVSTORE_ACCOUNT_NAME, AzureBlobStorage
from tests.azurite import AzuriteProcess

# A valid base64 account key whose text is the sentinel (the SDK must be able to sign).
SENTINEL = base64.b64encode(b"SENTINEL-account-key-do-not-print-" + bytes(30)).decode()
SAS_SENTINEL = "sv=2025-11-05&ss=b&srt=sco&sp=rwdl&se=2099-01-01T00%3A00%3A00Z&sig=S3NT1NELSIG"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEVSTORE_ACCOUNT_NAME};"
        f"AccountKey={SENTINEL};BlobEndpoint={endpoint};"
    )


def failure(call: Callable[[], object]) -> StorageError:
    with pytest.raises(StorageError) as info:
        call()
    return info.value


def assert_clean(exc: BaseException, *secrets: str) -> None:
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for secret in secrets:
        for text in shown:
            assert secret not in text


@pytest.fixture(autouse=True)
def _all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def test_wrong_key_is_refused_without_echoing_it(
    azurite: AzuriteProcess, caplog: pytest.LogCaptureFixture
) -> None:
    store = AzureBlobStorage(
        "secrets", "p", connection_string=connection_string(azurite.blob_endpoint)
    )
    for call in (lambda: store.write("f", b"1"), lambda: store.read("f"), store.list):
        exc = failure(call)
        assert exc.code == "storage.io"
        assert "403" in exc.message
        assert_clean(exc, SENTINEL)
    assert SENTINEL not in repr(store) + str(store) + store.uri
    assert SENTINEL not in caplog.text
    assert caplog.records, "the SDK logged nothing: this test would prove nothing about logs"


def test_unreachable_endpoint_with_key(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/{DEVSTORE_ACCOUNT_NAME}"
    store = AzureBlobStorage(
        "secrets", connection_string=connection_string(endpoint), retry_total=0
    )
    exc = failure(lambda: store.read("f"))
    assert exc.code == "storage.io"
    assert "unreachable" in exc.message
    assert_clean(exc, SENTINEL)
    assert SENTINEL not in caplog.text


def test_sas_is_never_shown(azurite: AzuriteProcess, caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/{DEVSTORE_ACCOUNT_NAME}"
    for endpoint in (azurite.blob_endpoint, dead):
        store = AzureBlobStorage(
            "secrets", "p", account_url=endpoint, credential=SAS_SENTINEL, retry_total=0
        )
        exc = failure(functools.partial(store.write, "f", b"1"))
        assert_clean(exc, "S3NT1NELSIG")
        assert "S3NT1NELSIG" not in repr(store)
    assert "S3NT1NELSIG" not in caplog.text


def test_malformed_connection_string_is_not_echoed() -> None:
    for bad in (f"garbage{SENTINEL}", f"AccountKey={SENTINEL}"):
        with pytest.raises(StorageConfigError) as info:
            AzureBlobStorage("secrets", connection_string=bad)
        assert info.value.code == "storage.config"
        assert_clean(info.value, SENTINEL)


def test_config_and_environment_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    config = StorageConfig(azure_connection_string=connection_string("http://h/x"))
    assert SENTINEL not in repr(config)
    assert SENTINEL not in repr(open_storage("az://c1x/p", config=config))
    monkeypatch.delenv("JOBRUNTIME_AZURE_CONNECTION_STRING", raising=False)  # Spark's, if set
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", f"broken{SENTINEL}")
    with pytest.raises(StorageConfigError) as info:
        open_storage("az://c1x/p")
    assert_clean(info.value, SENTINEL)
    with pytest.raises(StorageConfigError) as info:
        open_storage(f"https://acct.blob.core.windows.net/c1x/p?{SAS_SENTINEL}")
    assert_clean(info.value, "S3NT1NELSIG")
    keyed = StorageConfig(azure_credential={"account_name": "acct", "account_key": SENTINEL})
    assert SENTINEL not in repr(keyed)
    assert SENTINEL not in repr(
        open_storage("https://acct.blob.core.windows.net/c1x", config=keyed)
    )
