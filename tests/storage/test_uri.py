"""``open_storage`` picks the backend from the URI form, and refuses what it cannot open."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobruntime.storage import LocalStorage, StorageConfig, StorageConfigError, open_storage
from jobruntime.storage.azure import (
    DEVSTORE_ACCOUNT_KEY,
    DEVSTORE_ACCOUNT_NAME,
    AzureBlobStorage,
    development_connection_string,
)
from jobruntime.storage.uri import READ_TIMEOUT_ENV, canonical_uri, require_canonical
from tests.azurite import AzuriteProcess

ENV = ("JOBRUNTIME_AZURE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")
KEY = {"account_name": DEVSTORE_ACCOUNT_NAME, "account_key": DEVSTORE_ACCOUNT_KEY}


@pytest.fixture(autouse=True)
def _no_ambient_connection_string(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_file_uri_and_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for uri in (tmp_path.as_uri(), str(tmp_path), f"file://localhost{tmp_path}"):
        store = open_storage(uri)
        assert isinstance(store, LocalStorage)
        assert store.root == tmp_path
    spaced = open_storage((tmp_path / "a b").as_uri())
    assert isinstance(spaced, LocalStorage)
    assert spaced.root == tmp_path / "a b"
    monkeypatch.chdir(tmp_path)
    relative = open_storage("data/ds")
    assert isinstance(relative, LocalStorage)
    assert relative.root == tmp_path / "data" / "ds"


def test_az_uri_takes_the_connection_string_from_config_then_environment(
    monkeypatch: pytest.MonkeyPatch, azurite: AzuriteProcess
) -> None:
    with pytest.raises(StorageConfigError) as info:
        open_storage("az://datasets/org-a/customers")
    assert info.value.code == "storage.config"
    assert "JOBRUNTIME_AZURE_CONNECTION_STRING" in info.value.message

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "broken")
    monkeypatch.setenv("JOBRUNTIME_AZURE_CONNECTION_STRING", azurite.connection_string)
    store = open_storage("az://datasets/org-a/customers")  # ours wins over the SDK's name
    assert isinstance(store, AzureBlobStorage)
    assert (store.uri, store.container, store.prefix) == (
        "az://datasets/org-a/customers",
        "datasets",
        "org-a/customers",
    )
    store.write("part-0", b"1")

    config = StorageConfig(azure_connection_string=azurite.connection_string)
    monkeypatch.setenv("JOBRUNTIME_AZURE_CONNECTION_STRING", "broken")
    assert open_storage("az://datasets/org-a/customers", config=config).read("part-0") == b"1"

    monkeypatch.delenv("JOBRUNTIME_AZURE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    assert open_storage("az://datasets/org-a").list()[0].path == "customers/part-0"


def test_https_uri_needs_a_credential() -> None:
    uri = "https://acct.blob.core.windows.net/datasets/org-a/customers"
    with pytest.raises(StorageConfigError) as info:
        open_storage(uri)
    assert "azure_credential" in info.value.message
    store = open_storage(uri, config=StorageConfig(azure_credential=KEY))
    assert isinstance(store, AzureBlobStorage)
    assert (store.uri, store.container, store.prefix) == (uri, "datasets", "org-a/customers")


def test_loopback_emulator_url_is_path_style(azurite: AzuriteProcess) -> None:
    uri = f"{azurite.blob_endpoint}/viaurl/ds"
    store = open_storage(uri, config=StorageConfig(azure_credential=KEY))
    assert isinstance(store, AzureBlobStorage)
    assert (store.uri, store.container, store.prefix) == (uri, "viaurl", "ds")
    store.write("f", b"1")
    named = open_storage(
        "az://viaurl/ds",
        config=StorageConfig(azure_connection_string=azurite.connection_string),
    )
    assert named.read("f") == b"1"


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/x",
        "file://otherhost/data",
        "file:relative",
        "az:///no-container",
        "az://Bad_Container/x",
        "az://datasets/../up",
        "http://acct.blob.core.windows.net/c/p",  # plain http only for an emulator
        "https://example.com/c/p",
        "https://acct.blob.core.windows.net/",
        "https://acct.blob.core.windows.net/c/p#frag",
        "https://user:pw@acct.blob.core.windows.net/c/p",
    ],
)
def test_unusable_uris_are_config_errors(uri: str) -> None:
    config = StorageConfig(
        azure_connection_string=development_connection_string(), azure_credential=KEY
    )
    with pytest.raises(StorageConfigError) as info:
        open_storage(uri, config=config)
    assert info.value.exit_code == 23
    assert "pw@" not in info.value.message


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("/data/x/", "file:///data/x"),
        ("file:///data/./a/../x", "file:///data/x"),
        ("file:///data/a b", "file:///data/a%20b"),
        ("az://container/prefix/", "az://container/prefix"),
        ("az://container", "az://container"),
    ],
)
def test_one_canonical_spelling_per_dataset(text: str, canonical: str) -> None:
    assert canonical_uri(text) == canonical
    assert require_canonical(canonical) == canonical


def test_relative_paths_resolve_against_the_given_base(tmp_path: Path) -> None:
    assert canonical_uri("./d/../x", base=tmp_path) == f"file://{tmp_path}/x"


@pytest.mark.parametrize("text", ["x", "./x", "/data/x", "file:///data/./x", "az://c/p/"])
def test_anything_but_the_canonical_spelling_is_refused_in_specs(text: str) -> None:
    with pytest.raises(StorageConfigError, match="not canonical"):
        require_canonical(text)


def _read_timeout_of(store: object) -> float:
    transport = store._service._pipeline._transport  # type: ignore[attr-defined]
    return float(transport.connection_config.read_timeout)


def test_the_read_timeout_is_the_sdks_unless_the_operator_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV[0], development_connection_string("http://127.0.0.1:9/devstoreaccount1"))
    monkeypatch.delenv(READ_TIMEOUT_ENV, raising=False)
    assert _read_timeout_of(open_storage("az://timeouts/ds")) == 60.0
    monkeypatch.setenv(READ_TIMEOUT_ENV, "7.5")
    assert _read_timeout_of(open_storage("az://timeouts/ds")) == 7.5
    https = open_storage(
        "https://acct.blob.core.windows.net/timeouts/ds", config=StorageConfig(azure_credential=KEY)
    )
    assert _read_timeout_of(https) == 7.5
    for bad in ("0", "-1", "3601", "nan", "inf", "ten", "1e999"):
        monkeypatch.setenv(READ_TIMEOUT_ENV, bad)
        with pytest.raises(StorageConfigError) as info:
            open_storage("az://timeouts/ds")
        assert info.value.message == (
            f"${READ_TIMEOUT_ENV} must be a number of seconds from 1 to 3600"
        )
