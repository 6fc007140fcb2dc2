"""Where a pod's trust anchors come from: the image, or flags only in development mode.

The trust root, the job module's path and the control plane's URL decide what a pod
trusts and runs, and the namespace (its environment and arguments) is not trusted.
Outside development mode they come from fixed paths baked into the image; a flag or
variable that tries to set them is refused. Development mode (``JOBRUNTIME_DEV=1``)
takes them from flags and the environment, and says so on every start.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobruntime.errors import ConfigError

DEV_ENV = "JOBRUNTIME_DEV"
IMAGE_ETC = Path("/etc/jobruntime")
TRUST_ROOT_PATH = IMAGE_ETC / "trust-root.json"
RUNTIME_PATH = IMAGE_ETC / "runtime.json"
"""``{"control_plane_url": "https://...", "ca_bundle": "/etc/jobruntime/ca.pem"}``"""
JOBS_ROOT = Path("/opt/jobruntime")
"""Job modules live at ``JOBS_ROOT / "jobs/<name>.py"`` for import name ``jobs.<name>``."""


def dev_mode(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(DEV_ENV) == "1"


@dataclass(frozen=True)
class Anchors:
    """What a pod trusts: resolved once at start."""

    trust_root: Path
    control_plane_url: str
    ca_bundle: Path | None
    module: Path | None
    dev: bool

    def module_path(self, import_name: str) -> Path:
        """The job module's file: the image's fixed directory, or the dev override."""
        if self.module is not None:
            return self.module
        return JOBS_ROOT.joinpath(*import_name.split(".")).with_suffix(".py")


def anchors(
    component: str,
    *,
    trust_root: str | os.PathLike[str] | None = None,
    control_plane_url: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    module: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    needs_control_plane: bool = True,
) -> Anchors:
    """The pod's anchors; the arguments are what flags or the environment asked for."""
    if dev_mode(environ):
        print(
            f"{component}: DEVELOPMENT MODE ({DEV_ENV}=1): the trust root, job module and "
            "control plane come from flags and the environment; not for confidential data",
            file=sys.stderr,
        )
        if control_plane_url is None and needs_control_plane:
            raise ConfigError("no control-plane URL (flag or environment, development mode)")
        return Anchors(
            trust_root=Path(trust_root) if trust_root else TRUST_ROOT_PATH,
            control_plane_url=control_plane_url or "",
            ca_bundle=Path(ca_bundle) if ca_bundle else None,
            module=Path(module) if module else None,
            dev=True,
        )
    given = [
        name
        for name, value in (
            ("trust root", trust_root),
            ("control-plane URL", control_plane_url),
            ("CA bundle", ca_bundle),
            ("job module path", module),
        )
        if value
    ]
    if given:
        raise ConfigError(
            f"the {', '.join(given)} come from the image, not from flags or the environment "
            f"(set {DEV_ENV}=1 for development)"
        )
    url, ca = _runtime_config() if needs_control_plane else ("", None)
    return Anchors(TRUST_ROOT_PATH, url, ca, None, dev=False)


def _runtime_config() -> tuple[str, Path | None]:
    try:
        obj = json.loads(RUNTIME_PATH.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {RUNTIME_PATH}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{RUNTIME_PATH} is not JSON") from None
    url = obj.get("control_plane_url") if isinstance(obj, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigError(f"{RUNTIME_PATH} names no control_plane_url")
    ca = obj.get("ca_bundle")
    return url, Path(ca) if isinstance(ca, str) and ca else None
