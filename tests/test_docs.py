"""Documents that are generated from code must not drift from it."""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from jobruntime.emulator.openapi import document
from jobruntime.errors import JobRuntimeError
from scripts.gen_docs import (
    ERRORS_DOC,
    PACKAGES,
    VERIFIER_DOC,
    ErrorType,
    duplicate_codes,
    outputs,
    registry,
)

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "run `.venv/bin/python scripts/gen_docs.py`"
CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


@pytest.fixture(scope="module")
def classes() -> list[ErrorType]:
    return registry()


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    return outputs()


def test_openapi_document_is_current() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(document())), "run `make openapi`"


def test_errors_page_is_current(generated: dict[Path, str]) -> None:
    assert ERRORS_DOC.read_text() == generated[ERRORS_DOC], REGENERATE


def test_error_code_table_is_current(generated: dict[Path, str]) -> None:
    assert VERIFIER_DOC.read_text() == generated[VERIFIER_DOC], REGENERATE


def test_every_error_code_is_unique_with_one_exit_code(classes: list[ErrorType]) -> None:
    duplicates = duplicate_codes(classes)
    assert not duplicates, f"one code, one class, across all packages: {duplicates}"
    exits: dict[str, set[int]] = {}
    for cls in classes:
        where = f"{cls.__module__}.{cls.__qualname__}"
        assert isinstance(cls.code, str) and CODE.fullmatch(cls.code), where
        assert type(cls.exit_code) is int and 1 <= cls.exit_code <= 125, where
        exits.setdefault(cls.code, set()).add(cls.exit_code)
    assert {code: e for code, e in exits.items() if len(e) > 1} == {}


def test_errors_page_lists_every_code_exactly_once(classes: list[ErrorType]) -> None:
    """Read from the file as it is: each code once, in its exit code's section."""
    rows: list[str] = []
    section = None
    for line in ERRORS_DOC.read_text().splitlines():
        if heading := re.fullmatch(r"## Exit (\d+)", line):
            section = int(heading[1])
        elif row := re.match(r"\| `([^`]+)` \| (\d+) \|", line):
            assert int(row[2]) == section, f"{row[1]} is under exit {section}"
            rows.append(row[1])
    listed = Counter(rows)
    assert listed == Counter(cls.code for cls in classes), REGENERATE
    assert [code for code, n in listed.items() if n > 1] == []


def _error_classes_in_sources() -> set[tuple[str, str, str]]:
    """(module, class, code) of every top-level class whose body sets ``code = "..."``."""
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for node in ast.parse(path.read_text()).body:
                if not isinstance(node, ast.ClassDef):
                    continue
                for stmt in node.body:
                    target: ast.expr | None = None
                    if isinstance(stmt, ast.AnnAssign):
                        target = stmt.target
                    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                        target = stmt.targets[0]
                    value = getattr(stmt, "value", None)
                    if (
                        isinstance(target, ast.Name)
                        and target.id == "code"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        found.add((module, node.name, value.value))
    return found


def test_every_error_class_in_the_sources_is_in_the_registry(classes: list[ErrorType]) -> None:
    """No module escapes the import walk (a __main__, a folder without __init__.py)."""
    registered = {(c.__module__, c.__qualname__, c.code) for c in classes}
    assert _error_classes_in_sources() == registered


def test_an_error_class_outside_the_packages_is_not_documented() -> None:
    class ProbeError(JobRuntimeError):
        code = "test.probe"

    assert ProbeError not in registry()
