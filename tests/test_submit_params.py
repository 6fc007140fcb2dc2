"""Parameters checked on the submitting machine (issue 14, data scientists' part): the
job module's own ``Params`` refuses a misspelled or ill-fitting parameter before any
run is submitted, keyed or signed; lists come as JSON in ``--param`` or ``--params-file``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobruntime.dev.emulator import EmulatorProcess
from jobruntime.errors import ConfigError
from jobruntime.job import module as job_module
from jobruntime.job import params
from jobruntime.job.errors import ModuleLoadError, ParamsError, UnknownParamError

ROOT = Path(__file__).resolve().parents[1]
SALES = ROOT / "jobs" / "sales_summary.py"
REDACTION = ROOT / "jobs" / "redaction.py"


def jr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobruntime", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )


def run_ids(emu: EmulatorProcess) -> set[str]:
    with emu.client("operator") as c:
        return {r.run_id for r in c.all_runs()}


def submit(emu: EmulatorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return jr(
        "submit",
        *args,
        "--input",
        "sales=file:///nonexistent/sales",
        "--output",
        "summary=file:///nonexistent/summary",
        "--emulator-state",
        str(emu.state),
    )


def test_a_misspelled_param_is_refused_before_any_run(emulator: EmulatorProcess) -> None:
    before = run_ids(emulator)
    done = submit(emulator, str(SALES), "--param", "group_bye=region")
    assert done.returncode == 25, done.stderr
    assert "job.params_unknown" in done.stderr
    assert "'group_bye'" in done.stderr and "group_by, min_amount" in done.stderr
    assert run_ids(emulator) == before


def test_a_bad_value_is_refused_by_name_without_echoing_it(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    before = run_ids(emulator)
    done = submit(emulator, str(SALES), "--param", "group_by=SECRET-VALUE-42")
    assert done.returncode == 25, done.stderr
    assert "job.params:" in done.stderr and "group_by" in done.stderr
    assert "SECRET-VALUE-42" not in done.stderr + done.stdout
    file = tmp_path / "params.json"
    file.write_text(json.dumps({"min_amount": -7.25}))
    done = submit(emulator, str(SALES), "--params-file", str(file))
    assert done.returncode == 25, done.stderr
    assert "min_amount" in done.stderr and "-7.25" not in done.stderr
    assert run_ids(emulator) == before


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("0.5", 0.5),
        ("true", True),
        ('["email", "phone"]', ["email", "phone"]),
        ('{"a": 1}', {"a": 1}),
        ('"quoted"', "quoted"),
        ("region", "region"),
        ("NaN", "NaN"),
        ("[unclosed", "[unclosed"),
    ],
)
def test_a_param_value_is_json_if_it_parses_else_text(text: str, value: object) -> None:
    assert params.parse_value(text) == value


def test_lists_pass_from_param_and_params_file(tmp_path: Path) -> None:
    params.check(REDACTION, {"pii_columns": params.parse_value('["email","phone"]')})
    file = tmp_path / "p.json"
    file.write_text(json.dumps({"pii_columns": ["email"], "method": "mask"}))
    params.check(REDACTION, params.read_params_file(file))
    with pytest.raises(ParamsError, match="pii_columns: Field required"):
        params.check(REDACTION, {"method": "drop"})


def test_what_a_spec_cannot_carry_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="'pii_columns'"):
        params.check(REDACTION, {"pii_columns": {"a": 1}})
    with pytest.raises(ParamsError, match="'big'"):
        params.check(SALES, {"big": 2**60})
    with pytest.raises(ParamsError, match="not a valid name"):
        params.check(SALES, {"no spaces": 1})


def test_a_params_file_must_be_a_json_object(tmp_path: Path) -> None:
    file = tmp_path / "p.json"
    file.write_text('["x"]')
    with pytest.raises(ConfigError, match="JSON object"):
        params.read_params_file(file)
    file.write_text('{"hash_key": "s3cret-s3cret",')
    with pytest.raises(ConfigError, match="not JSON") as info:
        params.read_params_file(file)
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        params.read_params_file(tmp_path / "missing.json")


def test_checking_never_runs_the_job_nor_needs_spark(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(
        "from pydantic import BaseModel\n"
        "class Params(BaseModel):\n    k: int = 1\n"
        "def run(ctx):\n    raise SystemExit('ran')\n"
    )
    code = (
        "import sys; from pathlib import Path; from jobruntime.job import params;"
        f"params.check(Path({str(job)!r}), {{'k': 3}});"
        "assert not any(m.startswith('pyspark') for m in sys.modules), 'pyspark imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('secret row')\n")
    with pytest.raises(ModuleLoadError, match="RuntimeError") as info:
        params.check(broken, {})
    assert "secret row" not in str(info.value)


def test_the_driver_refuses_unknown_params_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    mod = types.ModuleType("jobs_under_test_sales_summary")
    monkeypatch.setitem(sys.modules, mod.__name__, mod)  # as job_module.load registers it
    exec(compile(SALES.read_bytes(), str(SALES), "exec"), mod.__dict__)  # noqa: S102
    with pytest.raises(UnknownParamError, match="'group_bye'"):
        job_module.params(mod, {"group_bye": "region"})
    assert job_module.params(mod, {"group_by": "product"}).group_by == "product"
