"""The attack matrix stays true: the docs page is what the declarations generate, every row's
tests exist, and every test in tests/adversarial is a row."""

from __future__ import annotations

import subprocess
import sys

from tests.adversarial.matrix import DOCS, FIELDS, ROOT, markdown, node_ids, rows, unmarked


def test_the_docs_page_is_generated_from_the_declarations() -> None:
    """docs/attack-matrix.md drifts when a row changes; regenerate it, do not edit it."""
    assert DOCS.read_text() == markdown(rows()), (
        "docs/attack-matrix.md is stale: run `python scripts/attack_report.py --docs-only`"
    )


def test_every_test_in_the_suite_declares_exactly_one_row() -> None:
    assert unmarked() == []
    everything = rows()
    ids = [r.id for r in everything]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for r in everything:
        assert all(getattr(r, f).strip() for f in FIELDS), r
        assert r.tests, r


def test_every_rows_tests_are_collected() -> None:
    """A renamed or deleted test would leave its row pointing at nothing."""
    wanted = node_ids(rows())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *wanted],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    for test in wanted:
        assert any(c == test or c.startswith(test + "[") for c in collected), test
