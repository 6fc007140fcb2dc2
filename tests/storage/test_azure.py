"""What only the Azure backend promises, against a real Azurite over HTTP."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from jobruntime.storage import ObjectInfo
from jobruntime.storage.azure import (
    DEFAULT_API_VERSION,
    DEVSTORE_ACCOUNT_KEY,
    DEVSTORE_ACCOUNT_NAME,
    AzureBlobStorage,
    MiB,
    development_connection_string,
    expand_development_storage,
)
from tests.azurite import AzuriteProcess
from tests.storage.conftest import azure_storage


def service(server: AzuriteProcess) -> BlobServiceClient:
    """An independent client, to look at what the backend did."""
    return BlobServiceClient.from_connection_string(
        server.connection_string, api_version=DEFAULT_API_VERSION
    )


def test_large_object_is_uploaded_in_4_mib_blocks_and_read_by_range(
    azurite: AzuriteProcess,
) -> None:
    store = azure_storage(azurite)
    data = os.urandom(9 * MiB)
    store.write("big.parquet", data)
    blob = service(azurite).get_blob_client(store.container, f"{store.prefix}/big.parquet")
    committed, uncommitted = blob.get_block_list("all")
    assert [b.size for b in committed] == [4 * MiB, 4 * MiB, 1 * MiB]
    assert uncommitted == []
    assert store.size("big.parquet") == 9 * MiB
    assert store.read("big.parquet") == data
    for offset, length in [
        (0, 8),
        (4 * MiB - 3, 6),  # across a block boundary
        (5 * MiB, 2 * MiB),
        (9 * MiB - 8, 8),  # the footer
        (9 * MiB - 1, 100),
    ]:
        assert store.read_range("big.parquet", offset, length) == data[offset : offset + length]


def test_large_create_is_still_create_if_absent(azurite: AzuriteProcess) -> None:
    store = azure_storage(azurite)
    data = os.urandom(9 * MiB)
    assert store.create("big", data)
    assert not store.create("big", b"small")
    assert store.read_range("big", 9 * MiB - 16, 16) == data[-16:]


def test_container_is_created_on_first_write(azurite: AzuriteProcess) -> None:
    store = azure_storage(azurite)
    container = service(azurite).get_container_client(store.container)
    assert not container.exists()
    assert store.list() == []
    assert not store.exists("x")
    store.write("x", b"1")
    assert container.exists()
    assert store.read("x") == b"1"


def test_prefixes_isolate_roots_in_one_container(azurite: AzuriteProcess) -> None:
    first = azure_storage(azurite, prefix="tenant-a")
    second = AzureBlobStorage(
        first.container, "tenant-ab/", connection_string=azurite.connection_string
    )
    top = AzureBlobStorage(first.container, "", connection_string=azurite.connection_string)
    first.write("f", b"1")
    second.write("f", b"22")
    assert first.list() == [ObjectInfo("f", 1)]
    assert second.list() == [ObjectInfo("f", 2)]
    assert top.list() == [ObjectInfo("tenant-a/f", 1), ObjectInfo("tenant-ab/f", 2)]
    assert second.uri == f"az://{first.container}/tenant-ab"
    assert top.uri == f"az://{first.container}"


def test_development_storage_shorthand(azurite: AzuriteProcess) -> None:
    assert expand_development_storage("UseDevelopmentStorage=true") == (
        development_connection_string("http://127.0.0.1:10000/devstoreaccount1")
    )
    other = "AccountName=x;AccountKey=eA==;BlobEndpoint=http://h/x"
    assert expand_development_storage(other) == other
    # The SDK's shorthand means port 10000; a BlobEndpoint next to it points elsewhere.
    shorthand = f"usedevelopmentstorage=True;BlobEndpoint={azurite.blob_endpoint}"
    store = AzureBlobStorage("devshort", "p", connection_string=shorthand)
    store.write("f", b"dev")
    assert (
        AzureBlobStorage("devshort", "p", connection_string=azurite.connection_string).read("f")
        == b"dev"
    )
    AzureBlobStorage("devshort", connection_string="UseDevelopmentStorage=true")  # no I/O yet


def test_account_url_with_key_and_with_sas(azurite: AzuriteProcess) -> None:
    key = {"account_name": DEVSTORE_ACCOUNT_NAME, "account_key": DEVSTORE_ACCOUNT_KEY}
    with_key = AzureBlobStorage("byurl", "p", account_url=azurite.blob_endpoint, credential=key)
    with_key.write("f", b"1")
    assert with_key.uri == f"{azurite.blob_endpoint}/byurl/p"
    sas = generate_container_sas(
        DEVSTORE_ACCOUNT_NAME,
        "byurl",
        account_key=DEVSTORE_ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    with_sas = AzureBlobStorage("byurl", "p", account_url=azurite.blob_endpoint, credential=sas)
    assert with_sas.read("f") == b"1"
    with_sas.rename("f", "g")  # the copy source is authorised by the same SAS
    assert with_sas.list() == [ObjectInfo("g", 1)]
    assert "sig" not in repr(with_sas)
