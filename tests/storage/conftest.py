"""Backends under test: every contract test runs on local disk and on a real Azurite."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from jobruntime.storage import LocalStorage, Storage
from jobruntime.storage.azure import AzureBlobStorage
from tests.azurite import AzuriteProcess


def azure_storage(server: AzuriteProcess, prefix: str = "datasets/run-1") -> AzureBlobStorage:
    """A fresh container per call, so tests never see each other's blobs."""
    container = f"t{secrets.token_hex(8)}"
    return AzureBlobStorage(container, prefix, connection_string=server.connection_string)


@pytest.fixture(params=["local", "azure"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    server: AzuriteProcess = request.getfixturevalue("azurite")
    return azure_storage(server)
