"""The locked dependency set: hash-pinned, complete, one version of each package everywhere.

`make lock` writes requirements/*.lock from pyproject.toml and requirements/*.in; these
checks read them offline, so a dependency added to pyproject.toml without `make lock`, a
hand-edited lock line without a hash, or an install step that stops checking hashes
fails here rather than on the image.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQS = ROOT / "requirements"
LOCKS = ("bootstrap", "build", "runtime", "dev")

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _entries(path: Path) -> list[str]:
    """The lock's requirement entries, continuation lines joined, comments dropped."""
    entries: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line}".strip()
        if current.endswith("\\"):
            current = current[:-1].strip()
            continue
        entries.append(current)
        current = ""
    assert not current, f"{path.name}: ends inside a continued line"
    return entries


def _lock(name: str) -> dict[str, Version]:
    """{canonical name: pinned version}, after checking that every entry is hash-pinned."""
    path = REQS / f"{name}.lock"
    pins: dict[str, Version] = {}
    for entry in _entries(path):
        first, *rest = entry.split()
        match = PIN.match(first)
        assert match, f"{path.name}: {entry[:80]!r} is not `name==version` (no options, URLs)"
        assert rest, f"{path.name}: {first} has no --hash"
        for part in rest:
            assert HASH.match(part), f"{path.name}: {first}: {part!r} is not a sha256 hash"
        key = canonicalize_name(match["name"])
        assert key not in pins, f"{path.name}: {key} pinned twice"
        pins[key] = Version(match["version"])
    assert pins, f"{path.name} pins nothing"
    return pins


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _requirements(lines: list[str]) -> list[Requirement]:
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def _in_file(name: str) -> list[str]:
    text = (REQS / f"{name}.in").read_text().splitlines()
    return [s for s in (line.split("#", 1)[0].strip() for line in text) if s]


def _assert_pinned(reqs: list[Requirement], lock: str) -> None:
    pins = _lock(lock)
    for req in reqs:
        key = canonicalize_name(req.name)
        assert key in pins, f"{req.name} is not in {lock}.lock: run `make lock`"
        assert req.specifier.contains(pins[key], prereleases=True), (
            f"{lock}.lock pins {key}=={pins[key]}, outside {req}: run `make lock`"
        )


@pytest.mark.parametrize("name", LOCKS)
def test_every_lock_line_is_hash_pinned(name: str) -> None:
    _lock(name)


def test_runtime_dependencies_are_pinned_in_runtime_lock() -> None:
    project = _pyproject()["project"]
    _assert_pinned(_requirements(project["dependencies"]), "runtime")


def test_dev_lock_pins_runtime_dev_and_build_requirements() -> None:
    pyproject = _pyproject()
    project = pyproject["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    _assert_pinned(_requirements(reqs), "dev")
    _assert_pinned(_requirements(_in_file("build")), "dev")


def test_build_lock_covers_the_build_system() -> None:
    build_system = _pyproject()["build-system"]
    in_names = {canonicalize_name(Requirement(r).name) for r in _in_file("build")}
    for line in build_system["requires"]:
        assert canonicalize_name(Requirement(line).name) in in_names, (
            f"[build-system] requires {line}: add it to requirements/build.in, `make lock`"
        )
    _assert_pinned(_requirements(build_system["requires"]), "build")
    _assert_pinned(_requirements(_in_file("build")), "build")


def test_bootstrap_lock_pins_the_tools_exactly() -> None:
    pins = _lock("bootstrap")
    for req in _requirements(_in_file("bootstrap")):
        assert str(req.specifier).startswith("=="), f"bootstrap.in: pin {req} exactly"
    _assert_pinned(_requirements(_in_file("bootstrap")), "bootstrap")
    assert {"pip", "uv"} <= pins.keys()


def test_locks_agree_on_every_shared_version() -> None:
    pins = {name: _lock(name) for name in LOCKS}
    for sub in ("runtime", "build"):
        missing = pins[sub].keys() - pins["dev"].keys()
        assert not missing, f"{sorted(missing)} in {sub}.lock but not dev.lock: `make lock`"
    seen: dict[str, tuple[str, Version]] = {}
    for name, lock in pins.items():
        for key, version in lock.items():
            other, was = seen.setdefault(key, (name, version))
            assert was == version, f"{key}: {was} in {other}.lock, {version} in {name}.lock"


def _install_commands() -> list[str]:
    """What `make install` runs from scratch, as make expands it (a dry run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-nB", "install"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [line for line in out.splitlines() if " pip install " in line]


def test_make_install_installs_only_from_the_locks_with_hashes() -> None:
    commands = _install_commands()
    installed = [c.split(" -r ", 1)[1].split()[0] for c in commands if " -r " in c]
    assert installed == [
        "requirements/bootstrap.lock",
        "requirements/build.lock",
        "requirements/dev.lock",
    ]
    for command in commands:
        assert "--no-deps" in command, command
        if " -r " in command:
            assert "--require-hashes" in command, command
        else:
            # The only install without hashes: the project itself, from this checkout.
            assert command.rstrip().endswith(" -e ."), command
            assert "--no-build-isolation" in command, command
    dev = next(c for c in commands if "requirements/dev.lock" in c)
    assert "--no-build-isolation" in dev, dev


def test_install_reruns_when_a_lock_or_pyproject_changes() -> None:
    rules: dict[str, list[str]] = {}
    for line in (ROOT / "Makefile").read_text().splitlines():
        target, sep, prereqs = line.partition(":")
        if sep and not line.startswith(("\t", "#")) and not prereqs.startswith("="):
            rules[target.strip()] = prereqs.split()
    assert "requirements/bootstrap.lock" in rules["$(BOOTSTRAP)"]
    for prereq in ("$(BOOTSTRAP)", "requirements/build.lock", "requirements/dev.lock"):
        assert prereq in rules["$(STAMP)"], prereq
    assert "pyproject.toml" in rules["$(STAMP)"]
