"""Dataset manifests as storage hands them back: storage is not trusted.

The seed is a manifest sealed with a real master key, so mutations that keep the key
id and key check reach the canonical body and the MAC, the last checks before a reader
believes the file list.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given

from jobruntime.dataset.errors import DatasetError, ManifestInvalidError
from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.dataset.manifest import (
    FileEntry,
    Manifest,
    encode_schema,
    load_verified,
    parse_unverified,
    seal,
)
from tests.fuzz.support import Refused, json_inputs, typed

KEY = LocalMasterKey("org-a/sales", hashlib.sha256(b"fuzz master key").digest())


def sealed() -> Manifest:
    draft = Manifest(
        dataset="sales",
        key_id=KEY.key_id,
        version=2,
        directory="v000002-0123abcd",
        previous="sha256:" + "9" * 64,
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        arrow_schema=encode_schema(pa.schema([("id", pa.int64()), ("name", pa.string())])),
        rows=10,
        files=[
            FileEntry(
                path=f"v000002-0123abcd/part-0000{i}.parquet",
                size=1000 + i,
                footer_sha256=f"{i}" * 64,
                rows=5,
                row_groups=1,
            )
            for i in range(2)
        ],
        key_check="0" * 64,
    )
    return seal(draft, KEY)


SEALED = json.loads(sealed().model_dump_json())


def test_the_seed_manifest_verifies() -> None:
    data = sealed().model_dump_json().encode()
    assert load_verified(data, KEY, "sales", "v2").digest == sealed().digest


@given(json_inputs(SEALED, keys=list(SEALED)))
def test_manifest_parsers(data: bytes) -> None:
    """Unverified parse (to read the key id), then the full check against the key."""
    for result in (
        typed(parse_unverified, data, "sales", "v2"),
        typed(load_verified, data, KEY, "sales", "v2"),
    ):
        assert not isinstance(result, Refused) or isinstance(result.error, DatasetError)


@pytest.mark.parametrize("field", ["dataset", "previous", "arrow_schema"])
def test_regression_a_lone_surrogate_in_a_manifest_is_malformed(field: str) -> None:
    """Found by fuzzing: ``"\\ud800"`` is valid JSON but not Unicode; it parsed, then the
    canonical body (RFC 8785) raised ValueError before the MAC was checked."""
    doc = SEALED | {field: "\ud800"}
    with pytest.raises(ManifestInvalidError):
        load_verified(json.dumps(doc).encode(), KEY, "sales", "v2")
