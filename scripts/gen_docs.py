"""Regenerate the error-code table in docs/verifier.md from jobruntime.errors."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import jobruntime
import verifier
from jobruntime.errors import all_error_types


def _import_everything() -> None:
    """Every module, so every error class is registered whatever was imported before."""
    for package in (jobruntime, verifier):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)


DOC = Path(__file__).resolve().parent.parent / "docs" / "verifier.md"
START, END = "<!-- codes:start -->", "<!-- codes:end -->"


def table() -> str:
    _import_everything()
    rows = ["| code | exit | class | when |", "| --- | --- | --- | --- |"]
    ours = [c for c in all_error_types() if c.__module__.startswith(("jobruntime", "verifier"))]
    for cls in sorted(ours, key=lambda c: (c.exit_code, c.code, c.__name__)):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        rows.append(f"| `{cls.code}` | {cls.exit_code} | `{cls.__name__}` | {doc} |")
    return "\n".join(rows)


def render(text: str) -> str:
    return re.sub(f"{START}.*{END}", f"{START}\n{table()}\n{END}", text, flags=re.DOTALL)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
