"""The memory-filesystem check: longest mount-point prefix of the real path."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobruntime.keyagent.errors import UnsafeDirError
from jobruntime.keyagent.memfs import filesystem_type, require_memory_fs
from jobruntime.keyagent.server import KeyAgentServer
from jobruntime.keyagent.source import StaticKeySource

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
31 30 0:6 / /run/job\\040dir rw - ramfs none rw
32 22 8:1 /x /runner rw - ext4 /dev/sda1 rw
40 30 8:1 /y /run/over rw - ext4 /dev/sda1 rw
41 30 0:9 / /run/over rw - tmpfs tmpfs rw
"""


@pytest.fixture
def mountinfo(tmp_path: Path) -> Path:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return path


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/", "ext4"),
        ("/home/user", "ext4"),
        ("/run", "tmpfs"),
        ("/run/jobruntime/agent.sock", "tmpfs"),
        ("/run/job dir/agent.sock", "ramfs"),  # octal escape in the mount point
        ("/runner/agent.sock", "ext4"),  # a prefix of the string, not of the path
        ("/run/over/agent.sock", "tmpfs"),  # mounted over: the later line wins
    ],
)
def test_longest_mount_point_prefix(mountinfo: Path, path: str, fstype: str) -> None:
    assert filesystem_type(Path(path), mountinfo) == fstype


def test_symlink_is_resolved_before_the_lookup(tmp_path: Path, shm_dir: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(shm_dir)
    assert filesystem_type(link) == "tmpfs"


def test_dev_shm_is_accepted(shm_dir: Path) -> None:
    require_memory_fs(shm_dir)


def test_disk_directory_is_refused(tmp_path: Path) -> None:
    fstype = filesystem_type(tmp_path)
    if fstype in {"tmpfs", "ramfs"}:
        pytest.skip(f"{tmp_path} is on {fstype} here; no disk directory to refuse")
    with pytest.raises(UnsafeDirError, match=fstype) as info:
        KeyAgentServer(tmp_path / "agent.sock", StaticKeySource({"a": b"k"}))
    assert info.value.code == "keyagent.unsafe_dir"
    assert not (tmp_path / "agent.sock").exists()


def test_disk_directory_allowed_when_not_required(tmp_path: Path) -> None:
    server = KeyAgentServer(
        tmp_path / "agent.sock", StaticKeySource({"a": b"k"}), require_memory_fs=False
    )
    server.close()
    assert not (tmp_path / "agent.sock").exists()
