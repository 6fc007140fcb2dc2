"""The CLI is consistent for its users (issue 14, data scientists' part): every flag and
positional has help, every command shows examples, every command that prints a result
takes ``--json`` (one JSON document on stdout, nothing else), and every command finds
its local state under one directory, ``$JOBRUNTIME_STATE`` (default ``.state``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobruntime.attestation.providers.emulated import EMULATED_MEASUREMENT
from jobruntime.cli import main as cli_main
from jobruntime.cli.common import STATE_ENV, default_state, emulator_state
from jobruntime.dev.emulator import EmulatorProcess

ROOT = Path(__file__).resolve().parent.parent

JSON_EXEMPT = {
    "emulator serve": "a server: it logs, it prints no result",
    "manifest": "YAML for kubectl (or -o FILE); `runs show --json` is the run's JSON view",
}
"""Leaf commands without ``--json``, and why."""

CONNECTION_ENV = ("JOB_CONTROL_PLANE_URL", "JOB_TOKEN", "JOB_TOKEN_FILE", "JOB_CA_BUNDLE")


def leaves(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path
    for s in subs:
        for name, child in s.choices.items():
            yield from leaves(child, (*path, name))


def leaf(path: str) -> argparse.ArgumentParser:
    p = cli_main.parser()
    for word in path.split():
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[word]
    return p


LEAVES = [" ".join(path) for path in leaves(cli_main.parser())]


def test_the_walk_sees_every_command() -> None:
    assert {path.split()[0] for path in LEAVES} == set(cli_main.COMMANDS)
    assert len(LEAVES) > 25


def test_every_command_in_a_listing_has_help() -> None:
    def groups(
        p: argparse.ArgumentParser,
    ) -> Iterator[argparse._SubParsersAction[argparse.ArgumentParser]]:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                yield a
                for child in a.choices.values():
                    yield from groups(child)

    for sub in groups(cli_main.parser()):
        assert all(c.help for c in sub._choices_actions), sub.choices.keys()


@pytest.mark.parametrize("path", LEAVES)
def test_every_flag_and_positional_has_help(path: str) -> None:
    p = leaf(path)
    missing = [
        a.option_strings or [a.dest]
        for a in p._actions
        if not isinstance(a, argparse._HelpAction | argparse._VersionAction)
        and not (a.help and a.help.strip())
    ]
    assert missing == []
    p.format_help()  # a stray % in a help text fails here, not in a user's terminal


@pytest.mark.parametrize("path", LEAVES)
def test_every_command_shows_examples(path: str) -> None:
    p = leaf(path)
    formatter = p.formatter_class
    assert isinstance(formatter, type)
    assert issubclass(formatter, argparse.RawDescriptionHelpFormatter)
    assert p.epilog and p.epilog.startswith("examples:")
    lines = [line.strip() for line in p.epilog.splitlines()[1:]]
    assert any(line.startswith(f"jobruntime {path}") for line in lines), p.epilog
    assert "examples:" in p.format_help()


@pytest.mark.parametrize("path", [p for p in LEAVES if p not in JSON_EXEMPT])
def test_every_command_that_prints_takes_json(path: str) -> None:
    p = leaf(path)
    flag = next((a for a in p._actions if "--json" in a.option_strings), None)
    assert flag is not None and isinstance(flag, argparse._StoreTrueAction)


def test_the_exemptions_are_real_commands() -> None:
    assert set(JSON_EXEMPT) <= set(LEAVES)


# --- --json through the real commands ------------------------------------------------


def env_with(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_ENV}
    env[STATE_ENV] = str(state)
    return env


def jr(*args: str, state: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env_with(state),
        cwd=cwd,
    )


def json_out(done: subprocess.CompletedProcess[str], code: int = 0) -> object:
    """The whole of stdout is one JSON document."""
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def test_keys_json(tmp_path: Path) -> None:
    made = json_out(
        jr("keys", "generate", "--out", "k.key", "--json", state=tmp_path, cwd=tmp_path)
    )
    assert isinstance(made, dict) and made["algorithm"] == "ed25519"
    assert made["trust_entry"] is None and made["public_key"] == "k.key.pub"
    shown = json_out(jr("keys", "id", "k.key.pub", "--json", state=tmp_path, cwd=tmp_path))
    assert shown == {"keyid": made["keyid"], "public_key": "k.key.pub"}
    text = jr("keys", "id", "k.key.pub", state=tmp_path, cwd=tmp_path)
    assert text.stdout.strip() == made["keyid"]  # text mode is as it was


def test_kms_and_cluster_json_need_no_control_plane(tmp_path: Path) -> None:
    measured = jr("kms", "emulated-measurement", "--json", state=tmp_path, cwd=tmp_path)
    assert json_out(measured) == {"measurement": EMULATED_MEASUREMENT.hex()}
    status = json_out(jr("cluster", "status", "--json", state=tmp_path, cwd=tmp_path))
    assert status == {"running": False, "state": str(tmp_path / "cluster")}


def test_conf_check_json_carries_the_refusals(tmp_path: Path) -> None:
    ok = json_out(jr("conf", "check", "--json", state=tmp_path, cwd=ROOT))
    assert isinstance(ok, dict) and ok["ok"] is True and ok["refusals"] == []
    weak = jr(
        "conf", "check", "--conf", "spark.authenticate=false", "--json", state=tmp_path, cwd=ROOT
    )
    refused = json_out(weak, code=31)
    assert isinstance(refused, dict) and refused["ok"] is False
    assert refused["refusals"][0]["code"].startswith("sparkconf.")
    assert "jobruntime: sparkconf." in weak.stderr  # stderr keeps the one-line form


# --- one state directory ---------------------------------------------------------------


def test_every_state_default_comes_from_jobruntime_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    p = cli_main.parser()
    assert p.parse_args(["emulator", "init"]).state == tmp_path / "emulator"
    assert p.parse_args(["emulator", "serve"]).state == tmp_path / "emulator"
    for cmd in ("up", "down", "status"):
        assert p.parse_args(["cluster", cmd]).state == tmp_path / "cluster"
    for var in CONNECTION_ENV:
        monkeypatch.delenv(var, raising=False)
    p = cli_main.parser()
    assert emulator_state(p.parse_args(["runs", "list"])) == tmp_path / "emulator"
    explicit = p.parse_args(["runs", "list", "--emulator-state", "/elsewhere"])
    assert emulator_state(explicit) == Path("/elsewhere")
    remote = p.parse_args(["runs", "list", "--url", "https://cp.example"])
    assert emulator_state(remote) is None  # a URL or a token means: not the local emulator
    monkeypatch.delenv(STATE_ENV)
    assert default_state("emulator") == Path(".state/emulator")


def test_submit_uses_the_same_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    args = cli_main.parser().parse_args(["submit", "jobs/overlap.py"])
    assert args.emulator_state == tmp_path / "emulator"
    assert args.cluster_state == tmp_path / "cluster"


def test_without_an_emulator_the_error_names_the_default_state(tmp_path: Path) -> None:
    done = jr("runs", "list", state=tmp_path, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"no running emulator recorded in {tmp_path / 'emulator'}" in done.stderr
    assert "jobruntime emulator serve" in done.stderr


def test_init_then_every_command_finds_the_state(tmp_path: Path) -> None:
    """``emulator init`` and ``serve`` into ``$JOBRUNTIME_STATE/emulator``, then commands
    with no ``--emulator-state``, run from another directory, talk to it."""
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = json_out(jr("emulator", "init", "--json", state=state, cwd=elsewhere))
    assert isinstance(made, dict) and made["state"] == str(state / "emulator")
    assert Path(made["trust_root"]).is_file() and Path(made["tokens"]).is_file()
    assert set(made["owner_keys"]) == {"org-a", "org-b"}
    with EmulatorProcess(state / "emulator"):
        listed = json_out(
            jr("runs", "list", "--as", "operator", "--json", state=state, cwd=elsewhere)
        )
        assert listed == []
        keys = json_out(jr("kms", "list", "--owner", "org-a", "--json", state=state, cwd=elsewhere))
        assert keys == []
