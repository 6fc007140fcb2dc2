"""Documents that are generated from code must not drift from it."""

from __future__ import annotations

import json
from pathlib import Path

from jobruntime.emulator.openapi import document
from scripts.gen_docs import DOC, render

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_document_is_current() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(document())), "run `make openapi`"


def test_error_code_table_is_current() -> None:
    text = DOC.read_text()
    assert render(text) == text, "run `.venv/bin/python scripts/gen_docs.py`"


def test_every_error_code_is_unique_with_one_exit_code() -> None:
    from jobruntime.errors import all_error_types
    from scripts.gen_docs import _import_everything

    _import_everything()
    seen: dict[str, str] = {}
    for cls in all_error_types():
        if not cls.__module__.startswith(("jobruntime", "verifier", "heartbeat")):
            continue
        where = f"{cls.__module__}.{cls.__name__}"
        assert seen.setdefault(cls.code, where) == where, f"{cls.code}: {seen[cls.code]}, {where}"
