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
