"""Regenerate the error-code table in docs/verifier.md from jobruntime.errors."""

from __future__ import annotations

import re
from pathlib import Path

import jobruntime.attestation.providers
import jobruntime.keyagent.errors
import jobruntime.keyrelease.jwe
import jobruntime.keyrelease.policy  # noqa: F401
from jobruntime.errors import all_error_types

DOC = Path(__file__).resolve().parent.parent / "docs" / "verifier.md"
START, END = "<!-- codes:start -->", "<!-- codes:end -->"


def table() -> str:
    rows = ["| code | exit | class | when |", "| --- | --- | --- | --- |"]
    for cls in sorted(all_error_types(), key=lambda c: (c.exit_code, c.code, c.__name__)):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        rows.append(f"| `{cls.code}` | {cls.exit_code} | `{cls.__name__}` | {doc} |")
    return "\n".join(rows)


def render(text: str) -> str:
    return re.sub(f"{START}.*{END}", f"{START}\n{table()}\n{END}", text, flags=re.DOTALL)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
