"""The one definition of a pod's HOST_DATA, and the launcher that hands it to the emulated TEE."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict, Unpack

import pytest

from jobruntime.dev.localpod import LocalPod, base_environment
from jobruntime.errors import ConfigError
from jobruntime.workload.pod import ContainerLaunch, Mount, SecretEnv, host_data


class Change(TypedDict, total=False):
    """Fields of a ``ContainerLaunch`` a test changes."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    files: tuple[Path, ...]
    mounts: tuple[Mount, ...]


def pod(tmp_path: Path, **change: Unpack[Change]) -> list[ContainerLaunch]:
    module = tmp_path / "job.py"
    if not module.exists():
        module.write_text("def run(ctx): pass\n")
    agent = ContainerLaunch("agent", ("python", "-m", "agent"), {"A": "1"}, (module,))
    driver = ContainerLaunch("driver", ("spark-submit", "x.py"), {"B": "2"}, ())
    return [agent, dataclasses.replace(driver, **change)]


def test_host_data_is_32_bytes_and_stable(tmp_path: Path) -> None:
    first = host_data(pod(tmp_path))
    assert len(first) == 32 and first == host_data(pod(tmp_path))


@pytest.mark.parametrize(
    "change",
    [
        {"argv": ("spark-submit", "y.py")},
        {"env": {"B": "3"}},
        {"env": {"B": "2", "C": ""}},
        {"name": "driver2"},
    ],
)
def test_any_change_to_a_container_changes_host_data(tmp_path: Path, change: Change) -> None:
    assert host_data(pod(tmp_path, **change)) != host_data(pod(tmp_path))


def test_a_changed_byte_of_a_trusted_file_changes_host_data(tmp_path: Path) -> None:
    before = host_data(pod(tmp_path))
    (tmp_path / "job.py").write_text("def run(ctx): exfiltrate(ctx)\n")
    assert host_data(pod(tmp_path)) != before


def test_bad_pods_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        host_data([])
    with pytest.raises(ConfigError):
        host_data(pod(tmp_path, name="agent"))  # two containers named alike
    with pytest.raises(ConfigError, match="cannot measure"):
        host_data(pod(tmp_path, files=(tmp_path / "missing",)))


def test_the_launcher_passes_host_data_and_drops_unmeasured_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_MODULE_PATH", "/somewhere/else.py")  # from the caller's shell
    monkeypatch.setenv("JOBRUNTIME_DEV", "1")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # a sitecustomize.py could sit there
    monkeypatch.setenv("LD_PRELOAD", "/nonexistent.so")
    inherited = base_environment()
    assert not {"JOB_MODULE_PATH", "JOBRUNTIME_DEV", "PYTHONPATH", "LD_PRELOAD"} & set(inherited)
    probe = (
        "import os, sys; g = os.environ.get; "
        "sys.stdout.write(' '.join(g(k, '-') for k in "
        "('JOB_EMULATED_HOST_DATA', 'JOB_MODULE_PATH', 'PYTHONPATH', 'X')))"
    )
    local = LocalPod.of([ContainerLaunch("probe", (sys.executable, "-c", probe), {"X": "1"})])
    out = local.run("probe", capture_output=True, text=True, timeout=30, check=True).stdout
    assert out == f"{local.host_data.hex()} - - 1"
    assert os.environ["JOB_MODULE_PATH"] == "/somewhere/else.py"  # the caller's is untouched


def test_the_launcher_measures_at_every_launch(tmp_path: Path) -> None:
    """A trusted file changed after the spec named the pod: the launch carries another value."""
    local = LocalPod.of(pod(tmp_path))
    named = local.host_data
    (tmp_path / "job.py").write_text("def run(ctx): exfiltrate(ctx)\n")
    assert local.environment("agent")["JOB_EMULATED_HOST_DATA"] != named.hex()


def test_the_driver_pod_measures_spark_conf(tmp_path: Path) -> None:
    """spark-conf/ (log4j2 keeps data values out of logs) is part of the driver's HOST_DATA."""
    import shutil

    from jobruntime.dev import pods
    from jobruntime.sparkconf.spark_home import default_conf_dir

    conf = tmp_path / "spark-conf"
    shutil.copytree(default_conf_dir(), conf)
    module, root = tmp_path / "job.py", tmp_path / "root.json"
    module.write_text("def run(ctx): pass\n")
    root.write_text("{}")
    plan = pods.PodPlan(
        "run-abcdef-1",
        "http://127.0.0.1:1",
        tmp_path / "t",
        root,
        module,
        "sha256:x",
        tmp_path / "tee",
        tmp_path / "work",
    )
    before = host_data([pods.driver_container(plan, ["spark-submit"], conf)])
    log4j = conf / "log4j2.properties"
    log4j.write_text(log4j.read_text() + "\nrootLogger.level = info\n")
    assert host_data([pods.driver_container(plan, ["spark-submit"], conf)]) != before


def mounted(root: Path, **change: Unpack[Change]) -> ContainerLaunch:
    """A container whose memory volume is at ``root``, named in an argument and a variable."""
    volume = root / "volumes" / "jobruntime-run"
    container = ContainerLaunch(
        "agent",
        ("python", "-m", "agent", "--socket", f"{volume}/agent/agent.sock"),
        {"JOB_BUNDLE_DIR": str(volume)},
        mounts=(Mount("/run/jobruntime", "jobruntime-run", volume),),
    )
    return dataclasses.replace(container, **change)


def test_pods_of_one_role_with_their_own_volumes_measure_the_same(tmp_path: Path) -> None:
    """Each pod's volume is its own directory; the measurement sees it at its mount path."""
    one, two = mounted(tmp_path / "pod-1"), mounted(tmp_path / "pod-2")
    assert one.argv != two.argv
    assert host_data([one]) == host_data([two])
    argv = one.measured()["argv"]
    assert isinstance(argv, list) and argv[-1] == "/run/jobruntime/agent/agent.sock"
    assert one.measured()["env"] == {"JOB_BUNDLE_DIR": "/run/jobruntime"}


@pytest.mark.parametrize(
    "change",
    [
        {"env": {"JOB_BUNDLE_DIR": "/elsewhere"}},  # a path outside the volume
        {"mounts": (Mount("/run/other", "jobruntime-run", Path("/x")),)},  # another mount path
        {"mounts": ()},  # no mount at all
    ],
)
def test_the_mounts_themselves_are_measured(tmp_path: Path, change: Change) -> None:
    assert host_data([mounted(tmp_path / "p", **change)]) != host_data([mounted(tmp_path / "p")])


def test_a_mount_matches_whole_paths_only(tmp_path: Path) -> None:
    volume = tmp_path / "v"
    c = ContainerLaunch(
        "c",
        ("x", f"{volume}/a", f"{volume}2/a", f"file:{volume}", f"x{volume}"),
        mounts=(Mount("/run/jobruntime", "run", volume),),
    )
    assert c.measured()["argv"] == [
        "x",
        "/run/jobruntime/a",
        f"{volume}2/a",
        "file:/run/jobruntime",
        f"x{volume}",
    ]


def test_a_secrets_variable_reaches_the_process_but_only_its_name_is_measured(
    tmp_path: Path,
) -> None:
    def with_secret(value: str) -> ContainerLaunch:
        probe = "import os, sys; sys.stdout.write(os.environ['CONN'])"
        return ContainerLaunch(
            "c", (sys.executable, "-c", probe), secret_env={"CONN": SecretEnv("store/conn", value)}
        )

    assert host_data([with_secret("AccountKey=one")]) == host_data([with_secret("AccountKey=two")])
    measured = with_secret("AccountKey=one").measured()
    assert measured["secret_env"] == {"CONN": "store/conn"}
    assert "AccountKey" not in repr(measured)
    local = LocalPod.of([with_secret("AccountKey=one")])
    out = local.run("c", capture_output=True, text=True, timeout=30, check=True).stdout
    assert out == "AccountKey=one"


def test_a_pod_without_mounts_or_secrets_measures_as_it_always_did(tmp_path: Path) -> None:
    """The optional parts are absent from the measurement when unused: no value changes."""
    import hashlib

    from jobruntime.spec.codec import canonical

    c = ContainerLaunch("c", ("a",), {"B": "1"})
    legacy = {"containers": [{"name": "c", "argv": ["a"], "env": {"B": "1"}, "files": {}}]}
    assert host_data([c]) == hashlib.sha256(canonical(legacy)).digest()
