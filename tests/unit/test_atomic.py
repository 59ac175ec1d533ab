"""atomic.write_file, the one way layerctl replaces a small file: a reader sees the
old or the new content, a failure leaves the old file and no temporary, and a secret's
mode is set before any byte is written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from layerctl import atomic, faults


def test_replaces_whole_and_sets_the_mode_at_creation(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("old")
    modes: list[int] = []

    def look() -> None:  # between the last write and the rename
        (tmp,) = [p for p in tmp_path.iterdir() if p.name != "config.json"]
        modes.append(stat.S_IMODE(tmp.stat().st_mode))
        assert path.read_text() == "old"  # readers still see the old file

    with faults.armed("atomic.before-rename", look):
        atomic.write_json(str(path), {"b": 1, "a": [2]}, mode=0o600)
    assert modes == [0o600]
    assert path.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")

    def fail() -> None:
        raise OSError(28, "No space left on device")

    with faults.armed("atomic.before-rename", fail), pytest.raises(OSError):
        atomic.write_file(str(path), b"new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_stale_temporary_of_our_pid_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "f"
    stale = tmp_path / f"f.tmp.{os.getpid()}"
    stale.write_text("half")
    atomic.write_file(str(path), b"whole", durable=False)
    assert path.read_bytes() == b"whole" and not stale.exists()


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / f"f.tmp.{os.getpid()}").symlink_to(victim)
    atomic.write_file(str(tmp_path / "f"), b"data")
    assert victim.read_text() == "keep" and (tmp_path / "f").read_bytes() == b"data"


def test_kill_before_the_rename_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    code = ("import sys; from layerctl import atomic; "
            "atomic.write_file(sys.argv[1], b'new')")
    proc = subprocess.run([sys.executable, "-c", code, str(path)],
                          env={**os.environ, "LAYERCTL_CRASH_AT": "atomic.before-rename"})
    assert proc.returncode == -9  # killed at the point, not exited
    assert path.read_text() == "old"


def test_concurrent_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "big"
    a, b = b"a" * 1_000_000, b"b" * 1_000_000
    atomic.write_file(str(path), a, durable=False)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            seen.add(data[:1] + data[-1:] + str(len(data)).encode())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(30):
            atomic.write_file(str(path), b if i % 2 == 0 else a, durable=False)
    finally:
        stop.set()
        reader.join()
    assert seen <= {b"aa1000000", b"bb1000000"}


def test_a_killed_writers_temporary_is_swept_and_nothing_deeper(tmp_path: Path) -> None:
    """fsck's debris sweep (store/debris.py) removes what a killed write_file left in
    cache/<kind>/; a live writer's temporary and user files deeper down stay."""
    from layerctl.store import debris

    cache = tmp_path / "cache"
    (cache / "changes").mkdir(parents=True)
    code = ("import sys; from layerctl import atomic; "
            "atomic.write_file(sys.argv[1], b'new', durable=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(cache / "changes" / "key")],
                            env={**os.environ, "LAYERCTL_CRASH_AT": "atomic.before-rename"})
    assert proc.wait() == -9
    (left,) = (cache / "changes").iterdir()
    assert left.name == f"key.tmp.{proc.pid}"
    live = cache / "changes" / f"other.tmp.{os.getpid()}"
    live.write_bytes(b"being written")
    user = cache / "overlay" / "abc" / "diff" / f"notes.tmp.{proc.pid}"
    user.parent.mkdir(parents=True)
    user.write_bytes(b"a file of the image")
    assert debris.clean_atomic_temps(str(cache)) == [str(left)]
    assert not left.exists() and live.exists() and user.exists()
