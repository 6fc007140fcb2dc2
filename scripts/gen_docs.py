"""Generate the error-code documentation from the one error registry.

    .venv/bin/python scripts/gen_docs.py           # rewrite docs/errors.md and docs/verifier.md
    .venv/bin/python scripts/gen_docs.py --check   # exit 1 if either is out of date

The registry is ``jobruntime.errors.all_error_types()``: every subclass of
``JobRuntimeError`` that has been imported. So that no class is missed, whatever was
imported before, every module of ``jobruntime``, ``verifier`` and ``heartbeat`` is
imported first, with two rules:

- ``__main__`` modules are skipped: each one is ``raise SystemExit(main())``, so
  importing it runs the command.
- nothing else is skipped and no import error is swallowed: every third-party module
  these packages import (pyspark, pyarrow, azure-servicebus, fastapi, ...) is a required
  dependency in pyproject.toml, and a module that failed to import would silently drop
  its codes from the page. The import-time side effects are harmless: the SEV-SNP report
  layout checks itself (``jobruntime/attestation/report.py``), and
  ``jobruntime/storage/azure.py`` adds a filter to urllib3's logger that redacts SAS
  signatures. No thread, signal handler, environment variable or file is touched.

docs/errors.md is written whole; in docs/verifier.md only the exit-code table between
``<!-- codes:start -->`` and ``<!-- codes:end -->`` is replaced.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from jobruntime.entrypoint import DEBUG_ENV
from jobruntime.errors import JobRuntimeError, all_error_types
from jobruntime.verification.pinned import DEV_ENV

PACKAGES = ("jobruntime", "verifier", "heartbeat")
COMMAND = "python scripts/gen_docs.py"

ROOT = Path(__file__).resolve().parent.parent
ERRORS_DOC = ROOT / "docs" / "errors.md"
VERIFIER_DOC = ROOT / "docs" / "verifier.md"
START, END = "<!-- codes:start -->", "<!-- codes:end -->"

ErrorType = type[JobRuntimeError]


def _raise(name: str) -> None:
    """pkgutil's ``onerror``: by default it ignores a package that fails to import."""
    raise ImportError(f"cannot import {name}")  # chained to the original error


def import_everything() -> None:
    """Import every module of PACKAGES but ``__main__``, so every error class registers."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, name + ".", onerror=_raise):
            if info.name.rpartition(".")[2] != "__main__":
                importlib.import_module(info.name)


def _ours(cls: ErrorType) -> bool:
    """Defined in one of PACKAGES (not, say, a test's own subclass)."""
    return any(cls.__module__ == p or cls.__module__.startswith(p + ".") for p in PACKAGES)


def registry() -> list[ErrorType]:
    """Every error class of PACKAGES, once each, by exit code then code."""
    import_everything()
    classes = dict.fromkeys(cls for cls in all_error_types() if _ours(cls))
    return sorted(classes, key=lambda c: (c.exit_code, c.code, c.__module__, c.__qualname__))


def duplicate_codes(classes: Sequence[ErrorType]) -> dict[str, list[str]]:
    """Codes that more than one class claims, with those classes' dotted names."""
    where: dict[str, list[str]] = defaultdict(list)
    for cls in classes:
        where[cls.code].append(f"{cls.__module__}.{cls.__qualname__}")
    return {code: names for code, names in where.items() if len(names) > 1}


def _cell(text: str) -> str:
    """One Markdown table cell: reST ``literals`` as `code`, no pipes, one line."""
    return " ".join(text.replace("``", "`").replace("|", "\\|").split())


def _summary(cls: ErrorType) -> str:
    """The docstring's first paragraph (its summary line), or empty."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return _cell(paragraph)


def _parent(cls: ErrorType) -> ErrorType | None:
    return next((b for b in cls.__bases__ if issubclass(b, JobRuntimeError)), None)


def _when(cls: ErrorType) -> str:
    summary = _summary(cls)
    parent = _parent(cls)
    if summary or parent is None:
        return summary
    return f"*(no docstring; a kind of `{parent.__name__}`)*"


def _roots(group: Sequence[ErrorType]) -> list[ErrorType]:
    """The classes that set this exit code: their parent (if any) has another."""
    return [
        cls
        for cls in group
        if all(
            b.exit_code != cls.exit_code for b in cls.__bases__ if issubclass(b, JobRuntimeError)
        )
    ]


def _by_exit_code(classes: Sequence[ErrorType]) -> dict[int, list[ErrorType]]:
    groups: dict[int, list[ErrorType]] = defaultdict(list)
    for cls in classes:
        groups[cls.exit_code].append(cls)
    return dict(sorted(groups.items()))


def _area(code: str) -> str:
    """``attestation.chain`` -> ``attestation.*``; a code without a dot is its own area."""
    prefix, dot, _ = code.partition(".")
    return f"{prefix}.*" if dot else code


def _wrap(text: str, indent: str = "") -> str:
    """A prose paragraph at the width of the hand-written docs."""
    return textwrap.fill(
        text, width=88, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def exit_code_table(classes: Sequence[ErrorType], link: str = "") -> str:
    """One row per exit code: its areas (code prefixes) and what its root classes say."""
    rows = ["| exit | codes | meaning |", "| --- | --- | --- |"]
    for exit_code, group in _by_exit_code(classes).items():
        areas = ", ".join(f"`{a}`" for a in sorted({_area(c.code) for c in group}))
        meaning = " ".join(_summary(c) for c in _roots(group))
        rows.append(f"| [{exit_code}]({link}#exit-{exit_code}) | {areas} | {meaning} |")
    return "\n".join(rows)


def _code_table(group: Sequence[ErrorType]) -> str:
    rows = ["| code | exit | class | module | when |", "| --- | --- | --- | --- | --- |"]
    for cls in sorted(group, key=lambda c: (c.code, c.__module__, c.__qualname__)):
        rows.append(
            f"| `{cls.code}` | {cls.exit_code} | `{cls.__qualname__}` | `{cls.__module__}` "
            f"| {_when(cls)} |"
        )
    return "\n".join(rows)


def errors_page(classes: Sequence[ErrorType]) -> str:
    unexpected = JobRuntimeError.exit_code
    parts = [
        f"<!-- Generated by `{COMMAND}` from the error classes of\n"
        f"     {', '.join(PACKAGES)}. Do not edit: tests/test_docs.py fails when this\n"
        "     file is not what the command writes. -->",
        "# Error codes",
        _wrap(
            "Every expected failure of the runtime is a typed exception, a subclass of "
            "`jobruntime.errors.JobRuntimeError`, with two stable attributes:"
        ),
        _wrap(
            "- a **code**, such as `dataset.wrong_key`, that logs, control-plane error "
            "bodies and tests key on; no two classes in any package share one;",
            indent="  ",
        )
        + "\n"
        + _wrap(
            "- an **exit code**, the status a command exits with when it fails with that "
            "error. One exit code covers an area (every `attestation.*` code exits 18), "
            "so many codes share one; each code has exactly one, inherited from the class "
            "that sets it. Exit codes are stable: scripts and pod monitoring can rely on "
            "them.",
            indent="  ",
        ),
        _wrap(
            "Every command (`jobruntime`, `job-verifier`, the key agent, the heartbeat "
            "sidecar and the driver entry that `spark-submit` runs) fails through "
            "`jobruntime/entrypoint.py` the same way: one line `<command>: <code>: "
            "<message>` on stderr (the verifier also writes it to its termination-message "
            "path) and the error's exit code. An unexpected error prints only "
            "`internal: unexpected <type>`, since its message may quote data, and exits "
            f"{unexpected}; an interrupt exits 130. `{DEBUG_ENV}=1` re-raises an "
            "unexpected error with its traceback, and only in development mode "
            f"(`{DEV_ENV}=1`): in a confidential run it has no effect."
        ),
        _wrap(
            "The tables below are grouped by exit code. Each row is one class: its code, "
            "exit code, class name, the module that defines it today, and the first line "
            "of its docstring."
        ),
        exit_code_table(classes),
    ]
    for exit_code, group in _by_exit_code(classes).items():
        parts.append(f"## Exit {exit_code}")
        parts.append(_wrap(" ".join(_summary(c) for c in _roots(group))))
        parts.append(_code_table(group))
    return "\n\n".join(p for p in parts if p) + "\n"


def verifier_page(text: str, classes: Sequence[ErrorType]) -> str:
    """``text`` (docs/verifier.md) with the exit-code table between the markers renewed."""
    block = f"{START}\n{exit_code_table(classes, link='errors.md')}\n{END}"
    new, count = re.subn(f"{START}.*?{END}", lambda _: block, text, flags=re.DOTALL)
    if count != 1:
        raise ValueError(f"expected one {START} ... {END} block, found {count}")
    return new


def outputs() -> dict[Path, str]:
    """What each generated file should contain."""
    classes = registry()
    return {
        ERRORS_DOC: errors_page(classes),
        VERIFIER_DOC: verifier_page(VERIFIER_DOC.read_text(), classes),
    }


def main(argv: Sequence[str]) -> int:
    check = list(argv) == ["--check"]
    if list(argv) not in ([], ["--check"]):
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    for code, names in duplicate_codes(registry()).items():
        print(f"gen_docs: warning: code {code} is used by {', '.join(names)}", file=sys.stderr)
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not check:
            path.write_text(text)
    for path in stale:
        print(f"{path} {'is out of date' if check else 'written'}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
