"""Run the attack matrix and print it: threat, adversary, mechanism, test, result.

The rows are declared once (``attack`` markers in tests/adversarial and the pointers in
tests/adversarial/registry.py); this runs exactly their tests in one pytest session,
collects each test's outcome through a small plugin, prints the matrix with rich and
exits 1 if any row failed (a test failed, errored or was not collected). A row whose
tests were all skipped is shown as skipped and does not fail the report.

    python scripts/attack_report.py               # run and print
    python scripts/attack_report.py --write-docs  # also regenerate docs/attack-matrix.md
    python scripts/attack_report.py --docs-only   # regenerate the page without running
    python scripts/attack_report.py -- -x -q      # extra pytest arguments after --
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.adversarial.matrix import AREAS, DOCS, Row, markdown, node_ids, rows  # noqa: E402

PASSED, FAILED, SKIPPED, MISSING = "passed", "failed", "skipped", "not run"
STYLE = {PASSED: "green", FAILED: "bold red", SKIPPED: "yellow", MISSING: "bold red"}


class Outcomes:
    """A pytest plugin: runs only the matrix's tests and keeps each one's worst outcome over
    setup, call and teardown.

    pytest is given the matrix's files and this plugin deselects every other test, so a
    test id that no longer exists (or a file that fails to import) fails its own row
    instead of stopping the whole run.
    """

    def __init__(self, wanted: list[str]) -> None:
        self.wanted = set(wanted)
        self.by_node: dict[str, str] = {}

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            base = item.nodeid.split("[", 1)[0]
            (keep if item.nodeid in self.wanted or base in self.wanted else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            outcome = FAILED
        elif report.skipped and hasattr(report, "wasxfail"):
            outcome = PASSED  # xfail(strict=True): the known gap is as documented
        elif report.skipped:
            outcome = SKIPPED
        elif report.when == "call":
            outcome = PASSED
        else:
            return
        current = self.by_node.get(report.nodeid)
        if current != FAILED and not (current == SKIPPED and outcome == PASSED):
            self.by_node[report.nodeid] = outcome

    def of(self, test: str) -> list[str]:
        """Outcomes of the items of ``test`` (a function's node id covers its parameters)."""
        return [
            o
            for node, o in self.by_node.items()
            if node == test or node[: len(test) + 1] == test + "["
        ]


def row_result(row: Row, outcomes: Outcomes) -> tuple[str, str]:
    """(result, detail): failed if any of its tests failed or never ran."""
    found = [(t, outcomes.of(t)) for t in row.tests]
    missing = [t for t, o in found if not o]
    every = [outcome for _, items in found for outcome in items]
    if FAILED in every:
        failed = sum(o == FAILED for o in every)
        return FAILED, f"{failed} of {len(every)} items failed"
    if missing:
        return MISSING, f"{len(missing)} test(s) not collected"
    if all(o == SKIPPED for o in every):
        return SKIPPED, f"{len(every)} skipped"
    detail = f"{len(every)} items" if len(every) > 1 else ""
    if SKIPPED in every:
        detail = f"{sum(o == SKIPPED for o in every)} of {len(every)} skipped"
    return PASSED, detail


def print_matrix(
    console: Console, selected: list[Row], results: dict[str, tuple[str, str]], seconds: float
) -> None:
    """One table per area: attack, threat, adversary, mechanism, test, result."""
    for area in AREAS:
        in_area = [r for r in selected if r.area == area]
        if not in_area:
            continue
        table = Table(title=f"attack matrix: {area}", show_lines=True, expand=True)
        for name, ratio in (
            ("attack", 2),
            ("threat", 4),
            ("adversary", 2),
            ("mechanism", 4),
            ("test", 4),
            ("result", 1),
        ):
            table.add_column(name, ratio=ratio, overflow="fold")
        for r in in_area:
            result, detail = results[r.id]
            tests = "\n".join(t.removeprefix("tests/") for t in r.tests)
            shown = f"[{STYLE[result]}]{result}[/]" + (f"\n{detail}" if detail else "")
            table.add_row(r.id, r.threat, r.adversary, r.mechanism, tests, shown)
        console.print(table)
    counts = {k: sum(res == k for res, _ in results.values()) for k in STYLE}
    new = sum(r.new for r in selected)
    console.print(
        f"{len(selected)} rows ({new} tests in tests/adversarial, {len(selected) - new} "
        f"pointers): "
        + ", ".join(f"[{STYLE[k]}]{n} {k}[/]" for k, n in counts.items() if n)
        + f" in {seconds:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        extra = args[args.index("--") + 1 :]
        args = args[: args.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write-docs", action="store_true", help=f"regenerate {DOCS.name}")
    parser.add_argument("--docs-only", action="store_true", help="regenerate without running")
    parser.add_argument("--area", choices=list(AREAS), help="run the rows of one area only")
    opts = parser.parse_args(args)
    selected = [r for r in rows() if opts.area is None or r.area == opts.area]
    if opts.write_docs or opts.docs_only:
        DOCS.write_text(markdown(rows()))
        print(f"wrote {DOCS.relative_to(ROOT)}")
        if opts.docs_only:
            return 0
    wanted = node_ids(selected)
    outcomes = Outcomes(wanted)
    started = time.monotonic()
    files = list(dict.fromkeys(t.split("::", 1)[0] for t in wanted))
    pytest_args = ["-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT)]
    pytest_args += ["--continue-on-collection-errors", *extra]
    code = pytest.main([*pytest_args, *files], plugins=[outcomes])
    seconds = time.monotonic() - started
    results = {r.id: row_result(r, outcomes) for r in selected}
    # A pipe or CI log gets rich's 80 columns by default: too narrow for six columns.
    console = Console() if sys.stdout.isatty() else Console(width=180)
    print_matrix(console, selected, results, seconds)
    bad = [i for i, (res, _) in results.items() if res in (FAILED, MISSING)]
    if bad:
        print(f"rows failed: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0 if code == pytest.ExitCode.OK else 1


if __name__ == "__main__":
    sys.exit(main())
