"""The committed OpenAPI document (docs/openapi.json) is generated from the app."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from jobruntime.emulator.app import create_app
from jobruntime.emulator.state import init_state


def document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        init_state(Path(tmp), ["org-a"])
        app = create_app(Path(tmp))
        doc: dict[str, Any] = app.openapi()
        app.state.control_plane.repo.close()
        return doc
