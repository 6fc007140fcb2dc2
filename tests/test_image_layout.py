"""The image's layout, built without Docker (issue 11).

This machine has no Docker, so the image itself is never built here. Instead this test
reads ``Dockerfile.spark`` and replays it under a temporary root: the build context as
``.dockerignore`` admits it, the COPY instructions, and the RUN steps as written, with the
image's paths moved under the temporary directory and this machine's CPython 3.11 in
place of the interpreter uv downloads in the builder. Then:

- the wheels come only from the locks (hash-checked) plus the project's own wheel, and
  the runtime environment holds exactly runtime.lock and the project, installed from
  those wheels alone (``--no-index``);
- every console script answers ``--help``; the driver entry (which has no ``--help``)
  starts Spark from the wheel-built pyspark and refuses its missing pod environment with
  its one-line error;
- the driver's own loader finds each job module at the fixed path the image's runtime
  looks at (``/opt/jobruntime/jobs``), reached here through development mode's module
  override, the only override the runtime has;
- hadolint passes, and the Dockerfile keeps its promises: hashes for everything from an
  index, no index in the runtime stage, no pip cache, uid 185, no secret in ENV or ARG.

pip's own cache (~/.cache/pip) is used for the builder's downloads and the pyspark wheel
it builds from source; everything the test makes is under tmp_path_factory and removed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from jobruntime.signing.keys import SigningKey
from jobruntime.signing.trustroot import Role, TrustedKey, TrustRoot
from jobruntime.spec.models import utcnow
from jobruntime.verification.pinned import JOBS_ROOT, RUNTIME_PATH, TRUST_ROOT_PATH

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.spark"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"
DRIVER = "jobruntime-driver"
# Where the builder stage's interpreter is; here, this machine's CPython 3.11.
IMAGE_PYTHON = "/opt/jobruntime/python/bin/python3"
# This machine's CPython (not the dev venv), as the builder's interpreter.
BASE_PYTHON = Path(sys.base_prefix, "bin", "python{}.{}".format(*sys.version_info[:2]))
# The base image's WORKDIR, which both stages start in.
BASE_WORKDIR = "/opt/spark/work-dir"
# An image path left in a command after the move would touch this machine's own.
UNMOVED = re.compile(r"(?:^|[\s\"'=(])/(?:opt|etc|mnt|usr|var|run)(?:/|\b)")
# Builder steps that need the base image (its python3 fetches uv, uv fetches CPython).
NOT_HERE = ("/opt/build/tools", "/opt/build/pythons")
SECRET_WORDS = re.compile(r"secret|token|key|passw|credential", re.IGNORECASE)


# --- Dockerfile.spark, read ---------------------------------------------------------------


@dataclass
class Instruction:
    stage: str
    keyword: str
    args: str


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    global_args: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == name]

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(i.stage for i in self.instructions if i.stage))

    def args_of(self, stage: str) -> dict[str, str]:
        found = dict(self.global_args)
        for i in self.stage(stage):
            if i.keyword == "ARG":
                name, _, default = i.args.partition("=")
                if default or name not in found:
                    found[name] = default
        return found


def read_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Instructions with continuation lines joined and comment lines dropped."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line}".strip() if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        logical.append(current)
        current = ""
    assert not current, "Dockerfile.spark ends inside a continued line"
    parsed = Dockerfile([])
    stage = ""
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            assert len(parts) == 3 and parts[1].upper() == "AS", f"unnamed stage: {line}"
            stage = parts[2]
        elif keyword == "ARG" and not stage:
            name, _, default = args.partition("=")
            parsed.global_args[name] = default
            continue
        parsed.instructions.append(Instruction(stage, keyword, args))
    return parsed


def run_commands(args: str) -> list[str] | list[list[str]]:
    """A RUN's commands: exec form as one argv, shell form split at ``&&``."""
    if args.startswith("["):
        argv = json.loads(args)
        assert isinstance(argv, list)
        return [[str(a) for a in argv]]
    while args.startswith("--"):  # --mount=... and friends
        args = args.split(None, 1)[1]
    return [part.strip() for part in args.split("&&")]


def pip_segments(df: Dockerfile, stage: str) -> list[str]:
    return [
        c
        for i in df.stage(stage)
        if i.keyword == "RUN"
        for c in run_commands(i.args)
        if isinstance(c, str) and " -m pip " in c
    ]


def final_stage(df: Dockerfile) -> str:
    return df.stages[-1]


# --- .dockerignore, as Docker applies it (last matching pattern wins; a pattern also
# --- matches everything under a directory it matches) -----------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def ignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line[1:] if include else line
        rules.append((include, _pattern(pattern.strip("/"))))
    return rules


def admitted(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    keep = True
    for include, pattern in rules:
        if any(pattern.fullmatch(p) for p in prefixes):
            keep = include
    return keep


# --- the replay ---------------------------------------------------------------------------


@dataclass
class Layout:
    build: Path  # the builder's /opt/build
    rootfs: Path  # the runtime image's /
    ran: list[str]

    @property
    def venv(self) -> Path:
        return self.rootfs / "opt/jobruntime/venv"

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(self.venv / "bin/python"), *args])


def clean_env() -> dict[str, str]:
    """This environment without the dev venv's or the runtime's own settings."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "SPARK_HOME", "SPARK_CONF_DIR")
    return {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("JOB_", "JOBRUNTIME_", "PYSPARK_"))
    }


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        env=clean_env() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{shlex.join(argv)[:300]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


class Replay:
    """Dockerfile.spark's COPY and RUN steps, with image paths moved under ``tmp``."""

    def __init__(self, df: Dockerfile, tmp: Path, extra_context: Path) -> None:
        self.df, self.extra = df, extra_context
        self.build, self.rootfs = tmp / "build", tmp / "rootfs"
        self.rules = ignore_rules()
        self.ran: list[str] = []
        self.moves = {
            IMAGE_PYTHON: str(BASE_PYTHON),
            "/opt/build": str(self.build),
            "/opt/jobruntime": f"{self.rootfs}/opt/jobruntime",
            "/etc/jobruntime": f"{self.rootfs}/etc/jobruntime",
            "/opt/spark": f"{self.rootfs}/opt/spark",
        }
        longest_first = sorted(self.moves, key=len, reverse=True)
        self.moved = re.compile("|".join(f"{re.escape(k)}(?![\\w.-])" for k in longest_first))

    def here(self, text: str) -> str:
        moved = self.moved.sub(lambda m: self.moves[m.group(0)], text)
        assert not UNMOVED.search(moved), f"an image path has no place here: {text}"
        return moved

    def path(self, image_path: str, workdir: str) -> Path:
        absolute = image_path if image_path.startswith("/") else f"{workdir}/{image_path}"
        return Path(self.here(absolute.rstrip("/")))

    def context_files(self, source: str) -> tuple[bool, list[tuple[Path, str]]]:
        """Whether ``source`` names one file, and (file, its path under the destination)
        for what the context sends of it: a file by its name, a directory's admitted files
        by their paths inside it."""
        base = self.extra if (self.extra / source).exists() else ROOT
        globbed = any(c in source for c in "*?[")
        matches = sorted(base.glob(source)) if globbed else [base / source]
        assert matches and all(m.exists() for m in matches), f"COPY {source}: not in the context"
        one_file = not globbed and matches[0].is_file()
        found: list[tuple[Path, str]] = []
        for match in matches:
            rel = match.relative_to(base).as_posix()
            assert admitted(rel, self.rules), f"COPY {source}: .dockerignore leaves {rel} out"
            if match.is_file():
                found.append((match, match.name))
                continue
            for file in sorted(p for p in match.rglob("*") if p.is_file()):
                if admitted(file.relative_to(base).as_posix(), self.rules):
                    found.append((file, file.relative_to(match).as_posix()))
        return one_file, found

    def copy(self, args: str, stage_args: dict[str, str], workdir: str) -> None:
        tokens = [t for t in shlex.split(args) if not t.startswith("--")]
        *sources, dest = (
            re.sub(r"\$\{(\w+)\}", lambda m: stage_args[m.group(1)], t) for t in tokens
        )
        target = self.path(dest, workdir)
        for source in sources:
            one_file, files = self.context_files(source)
            into_dir = dest.endswith("/") or len(sources) > 1 or not one_file
            for file, rel in files:
                out = target / rel if into_dir else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)

    def command(self, cmd: str | list[str], builder: bool, workdir: Path) -> None:
        text = cmd if isinstance(cmd, str) else shlex.join(cmd)
        if any(marker in text for marker in NOT_HERE):
            return
        if builder:  # pip's cache instead of --no-cache-dir: pyspark builds once, not each run
            text = text.replace(" --no-cache-dir", "")
        moved = self.here(text)
        workdir.mkdir(parents=True, exist_ok=True)
        run(["bash", "-eu", "-c", moved], cwd=workdir)
        self.ran.append(text)

    def replay(self) -> Layout:
        # The base image's Spark jars, which the builder compiles the native path's jar
        # against: here, pyspark's own (the same Spark version, as the base image test checks).
        jars = self.rootfs / "opt/spark/jars"
        jars.parent.mkdir(parents=True, exist_ok=True)
        jars.symlink_to(Path(pyspark_jars()), target_is_directory=True)
        for stage in self.df.stages:
            stage_args = self.df.args_of(stage)
            workdir = BASE_WORKDIR
            for i in self.df.stage(stage):
                if i.keyword == "WORKDIR":
                    workdir = i.args
                elif i.keyword == "COPY" and "--from=" not in i.args:
                    self.copy(i.args, stage_args, workdir)
                elif i.keyword == "RUN":
                    for cmd in run_commands(i.args):
                        self.command(cmd, stage == "builder", self.path(workdir, "/"))
        return Layout(self.build, self.rootfs, self.ran)


def pyspark_jars() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "jars")


def trust_root_json() -> str:
    key = SigningKey.generate("ed25519")
    now = utcnow()
    trusted = TrustedKey(
        keyid=key.keyid,
        public_key_pem=key.public_pem,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )
    return TrustRoot(keys=[trusted], control_plane=Role(keyids=[key.keyid])).to_json()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    tmp = tmp_path_factory.mktemp("image")
    extra = tmp / "context"  # the operator's build arguments' files
    extra.mkdir()
    df = read_dockerfile()
    args = df.args_of(final_stage(df))
    (extra / args["TRUST_ROOT"]).write_text(trust_root_json())
    (extra / args["RUNTIME_CONFIG"]).write_text(
        json.dumps({"control_plane_url": "https://control-plane.example"})
    )
    try:
        yield Replay(df, tmp, extra).replay()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # about 2 GB of wheels and venvs


# --- what the replay made -----------------------------------------------------------------


def lock_pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / f"{name}.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            pins[canonicalize_name(m[1])] = m[2]
    return pins


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def console_scripts() -> list[str]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    return sorted(project["scripts"])


@pytest.mark.slow
def test_the_replay_ran_the_builder_and_runtime_steps(layout: Layout) -> None:
    steps = "\n".join(layout.ran)
    for expected in (
        "-m venv /opt/build/venv",
        "-r requirements/bootstrap.lock",
        "-r requirements/build.lock",
        "pip wheel --require-hashes --no-deps --no-build-isolation --wheel-dir "
        "/opt/build/wheels -r requirements/runtime.lock",
        "--wheel-dir /opt/build/wheels ./src",
        "-m venv --without-pip /opt/jobruntime/venv",
        "install --no-cache-dir --no-index --find-links /opt/build/wheels",
        "/opt/jobruntime/driver.py",
        "/etc/jobruntime/trust-root.json",
        "java/jobruntime-kms/build.sh /opt/spark/jars /opt/build/jobruntime-kms.jar",
    ):
        assert expected in steps, f"no step with {expected!r} ran"
    assert (layout.build / "jobruntime-kms.jar").is_file()


@pytest.mark.slow
def test_wheels_are_the_runtime_lock_and_the_project(layout: Layout) -> None:
    built = (layout.build / "wheels").glob("*.whl")
    wheels = {canonicalize_name(w.name.split("-")[0]) for w in built}
    assert wheels == set(lock_pins("runtime")) | {"confidential-spark-runtime"}


@pytest.mark.slow
def test_runtime_venv_is_exactly_the_lock_from_the_wheels(layout: Layout) -> None:
    listed = layout.python(
        "-c",
        "import json, sys, importlib.metadata as m; print(json.dumps({'python': "
        "list(sys.version_info[:2]), 'dists': {d.metadata['Name']: d.version "
        "for d in m.distributions()}}))",
    )
    found = json.loads(listed.stdout)
    assert found["python"] == [3, 11]
    dists = {canonicalize_name(k): v for k, v in found["dists"].items()}
    expected = lock_pins("runtime") | {"confidential-spark-runtime": str(_version())}
    assert dists == expected  # nothing more (no pip, no setuptools), nothing less


def _version() -> object:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    return project["version"]


@pytest.mark.slow
def test_every_console_script_answers_help(layout: Layout) -> None:
    scripts = console_scripts()
    assert {"job-verifier", "jobruntime-key-agent", "jobruntime-heartbeat", DRIVER} <= set(scripts)
    env = clean_env()
    for name in scripts:
        assert (layout.venv / "bin" / name).is_file(), f"the wheel installs no {name}"
        if name == DRIVER:
            continue  # takes no arguments: spark-submit runs it (next test)
        proc = run([str(layout.venv / "bin" / name), "--help"], env=env, check=False)
        assert proc.returncode == 0, f"{name} --help: {proc.stderr[-2000:]}"
        assert "usage:" in proc.stdout, name


@pytest.mark.slow
def test_driver_entry_starts_spark_and_refuses_without_its_pod(layout: Layout) -> None:
    """Outside a pod (no bundle, no key agent) the driver entry starts Spark's JVM from the
    wheel-built pyspark and stops with its one-line refusal, never a traceback."""
    env = clean_env() | {
        "PATH": f"{layout.venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SPARK_CONF_DIR": str(layout.rootfs / "opt/spark/conf"),
        "PYSPARK_PYTHON": str(layout.venv / "bin/python"),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    proc = run([str(layout.venv / "bin" / DRIVER)], env=env, check=False, timeout=300)
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode not in (0, 70), proc.stderr[-2000:]
    assert last.startswith(f"{DRIVER}: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


DRIVER_LOADS = """
import hashlib, json, sys
from pathlib import Path
from jobruntime.job import module as job_module
from jobruntime.spec.models import JobModule
from jobruntime.verification.pinned import anchors

rootfs, names = Path(sys.argv[1]), sys.argv[2:]
image = anchors("jobruntime-driver", environ={}, needs_control_plane=False)
found = {}
for name in names:
    import_name = "jobs." + name
    fixed = image.module_path(import_name)  # where the driver looks in the image
    staged = rootfs / fixed.relative_to("/")  # that file in this layout
    dev = anchors(
        "jobruntime-driver", module=staged, environ={"JOBRUNTIME_DEV": "1"},
        needs_control_plane=False,
    )
    pinned = JobModule(
        import_name=import_name, sha256=hashlib.sha256(staged.read_bytes()).hexdigest()
    )
    loaded = job_module.load(dev.module_path(import_name), pinned)
    job_module.entry(loaded, pinned.entry)
    found[import_name] = str(fixed)
print(json.dumps(found))
"""


@pytest.mark.slow
def test_driver_loads_the_job_modules_from_the_fixed_directory(layout: Layout) -> None:
    names = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__")
    assert names, "no job modules in jobs/"
    proc = layout.python("-c", DRIVER_LOADS, str(layout.rootfs), *names)
    found = json.loads(proc.stdout)
    assert found == {f"jobs.{n}": f"/opt/jobruntime/jobs/{n}.py" for n in names}
    for n in names:  # the image holds the repository's bytes
        staged = layout.rootfs / f"opt/jobruntime/jobs/{n}.py"
        assert staged.read_bytes() == (ROOT / "jobs" / f"{n}.py").read_bytes()


@pytest.mark.slow
def test_fixed_paths_hold_the_anchors_and_spark_conf(layout: Layout) -> None:
    etc = layout.rootfs / "etc/jobruntime"
    TrustRoot.load(etc / "trust-root.json")
    assert json.loads((etc / "runtime.json").read_text())["control_plane_url"]
    conf = layout.rootfs / "opt/spark/conf"
    for f in (ROOT / "spark-conf").iterdir():
        if f.is_file():
            assert (conf / f.name).read_bytes() == f.read_bytes()
    driver = layout.rootfs / "opt/jobruntime/driver.py"
    assert driver.is_symlink()
    assert driver.resolve().is_relative_to(layout.venv)
    assert driver.resolve().as_posix().endswith("site-packages/jobruntime/job/driver.py")


# --- the Dockerfile's promises, read --------------------------------------------------------


def test_hadolint_passes() -> None:
    assert HADOLINT.is_file(), f"{HADOLINT} is missing: `make install` (the dev extra has it)"
    proc = run([str(HADOLINT), "--no-color", str(DOCKERFILE)], check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_the_locked_spark_by_digest() -> None:
    df = read_dockerfile()
    assert df.stages == ["builder", "runtime"]
    for stage in df.stages:
        # every stage starts from the same pinned image
        assert read_from(stage) == "${SPARK_IMAGE}"
    ref = df.global_args["SPARK_IMAGE"]
    m = re.fullmatch(
        r"spark:(?P<spark>\d+\.\d+\.\d+)-scala2\.13-java(17|21)-python3-ubuntu"
        r"@sha256:[0-9a-f]{64}",
        ref,
    )
    assert m, f"SPARK_IMAGE={ref} is not the official Spark Python image by digest"
    assert m["spark"] == lock_pins("runtime")["pyspark"], "Spark and pyspark versions differ"
    python = df.global_args["PYTHON_VERSION"]
    assert re.fullmatch(r"3\.11\.\d+", python), "the locks are resolved for CPython 3.11"
    assert "--python-version 3.11" in (ROOT / "Makefile").read_text()


def read_from(stage: str) -> str:
    for line in DOCKERFILE.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["FROM"] and parts[-1] == stage:
            return parts[1]
    raise AssertionError(f"no stage {stage}")


def test_install_lines_check_hashes_and_use_no_index_at_runtime() -> None:
    df = read_dockerfile()
    builder = pip_segments(df, "builder")
    runtime = pip_segments(df, final_stage(df))
    assert builder and runtime
    for seg in builder + runtime:
        if re.search(r" -m pip (--python \S+ )?(install|wheel|download) ", seg):
            assert "--no-cache-dir" in seg, seg
            assert "--no-deps" in seg, seg
    for seg in builder:
        if "-r requirements/" in seg:
            assert "--require-hashes" in seg, seg
        else:  # only the project's own wheel, from the context
            assert seg.endswith("./src"), seg
    installs = [s for s in runtime if re.search(r" (install|wheel|download) ", s)]
    assert installs
    for seg in installs:
        assert "--no-index" in seg and "--find-links" in seg, seg
    runtime_runs = " ".join(i.args for i in df.stage(final_stage(df)) if i.keyword == "RUN")
    for tool in ("apt-get", "gcc", "curl", "wget", "uv "):
        assert tool not in runtime_runs, f"the runtime stage runs {tool}"


def test_runs_as_uid_185_and_holds_no_secret() -> None:
    df = read_dockerfile()
    for stage in df.stages:
        users = [i.args for i in df.stage(stage) if i.keyword == "USER"]
        assert users and users[-1] == "185", f"{stage} ends as {users[-1:]}, not uid 185"
    for i in df.instructions:
        if i.keyword == "ENV":
            assert not SECRET_WORDS.search(i.args), f"ENV {i.args}"
            assert "JOBRUNTIME_DEV" not in i.args
        if i.keyword == "ARG":
            assert not SECRET_WORDS.search(i.args.partition("=")[0]), f"ARG {i.args}"
    labels = " ".join(i.args for i in df.stage(final_stage(df)) if i.keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "source", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert df.args_of(final_stage(df))["VERSION"] == _version()


def test_fixed_paths_are_the_runtimes() -> None:
    df = read_dockerfile()
    copies = [i.args.split() for i in df.stage(final_stage(df)) if i.keyword == "COPY"]
    dest = {c[-2]: c[-1] for c in copies if not c[0].startswith("--from")}
    assert Path(dest["jobs/"]) == JOBS_ROOT / "jobs"
    assert Path(dest["${TRUST_ROOT}"]) == TRUST_ROOT_PATH
    assert Path(dest["${RUNTIME_CONFIG}"]) == RUNTIME_PATH
    assert dest["spark-conf/"] == "/opt/spark/conf/"
    env = " ".join(i.args for i in df.stage(final_stage(df)) if i.keyword == "ENV")
    assert "SPARK_CONF_DIR=/opt/spark/conf" in env
    assert "PYSPARK_PYTHON=/opt/jobruntime/venv/bin/python" in env


def test_dockerignore_admits_the_sources_and_nothing_secret() -> None:
    rules = ignore_rules()
    df = read_dockerfile()
    for i in df.instructions:
        if i.keyword == "COPY" and "--from=" not in i.args:
            *sources, _ = shlex.split(i.args)
            for source in sources:
                arg = re.fullmatch(r"\$\{(\w+)\}", source)
                name = df.args_of(i.stage)[arg[1]] if arg else source
                probe = name.replace("*", "x")  # requirements/*.lock
                assert admitted(probe, rules), f"COPY {source}: .dockerignore leaves it out"
    for kept_out in (
        ".state/emulator/tokens.json",
        ".state/emulator/owners/org-a.key",
        ".demo/state/keys.json",
        ".venv/bin/python",
        ".git/config",
        "node_modules/azurite/package.json",
        "tests/conftest.py",
        "jobruntime/__pycache__/errors.cpython-311.pyc",
        "jobs/leftover.key",
        "requirements/dev.in",
        "jobruntime/dev/podrunner.py",  # development harnesses: no pod may reach for them
        "jobruntime/dev/cluster/standalone.py",
    ):
        assert not admitted(kept_out, rules), f".dockerignore admits {kept_out}"
    assert admitted("jobruntime/attestation/amd/ask_ark_milan.pem", rules)
