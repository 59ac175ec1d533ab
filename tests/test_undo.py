"""Nothing is lost: every ref move is in a (git-readable) reflog, `IMAGE@{n}` names
old values, and `layerctl undo` brings back the exact state before each destructive
command (refs, checkouts, a container's files and `status`), also after kill -9."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_crash_points import KILLED
from tests.treecompare import compare, snapshot

pytestmark = pytest.mark.needs_root


def _rootfs(top: Path) -> Path:
    (top / "etc" / "conf.d").mkdir(parents=True)
    (top / "etc" / "hostname").write_text("base\n")
    (top / "etc" / "motd").write_text("one\ntwo\nthree\n")
    (top / "etc" / "conf.d" / "a.conf").write_text("a=1\n")
    (top / "etc" / "conf.d" / "b.conf").write_text("b=1\n")
    (top / "usr" / "bin").mkdir(parents=True)
    (top / "usr" / "bin" / "tool").write_bytes(b"\x7fELF\0tool")
    (top / "usr" / "bin" / "tool").chmod(0o755)
    (top / "srv").mkdir()
    (top / "srv" / "old").write_text("old\n")
    os.symlink("usr/bin", top / "bin")
    return top


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(root), *args], capture_output=True, text=True)


@dataclass
class Box:
    cli: object
    root: Path
    tmp: Path
    merged: str

    def refs(self) -> dict[str, str]:
        out = git(self.root, "for-each-ref", "--format=%(refname) %(objectname)",
                  "refs/images", "refs/containers").stdout
        return dict(line.split() for line in out.splitlines())

    def state(self) -> tuple:
        """Refs, `status`, and every entry of the container's tree with its metadata."""
        status = self.cli("status", "c1").stdout
        return self.refs(), status, snapshot(self.merged)

    def assert_state(self, expected: tuple) -> None:
        refs, status, tree = self.state()
        assert refs == expected[0]
        assert status == expected[1]
        assert compare(expected[2], tree) == []

    def checkout(self, ref: str, name: str) -> dict:
        dest = self.tmp / name
        self.cli("checkout", ref, dest)
        return snapshot(dest)

    def edit(self) -> None:
        """Changes of every kind: content, added file and dir, deleted file and dir,
        mode, a symlink, a file replaced by a directory."""
        m = Path(self.merged)
        (m / "etc" / "motd").write_text("one\nTWO\nthree\n")
        (m / "etc" / "new.conf").write_text("new\n")
        (m / "opt" / "app").mkdir(parents=True)
        (m / "opt" / "app" / "run").write_text("#!/bin/sh\n")
        (m / "etc" / "hostname").unlink()
        subprocess.run(["rm", "-rf", str(m / "etc" / "conf.d")], check=True)
        (m / "usr" / "bin" / "tool").chmod(0o700)
        os.symlink("/etc/motd", m / "etc" / "motd.link")
        (m / "srv" / "old").unlink()
        (m / "srv" / "old").mkdir()
        (m / "srv" / "old" / "inside").write_text("x\n")


@pytest.fixture
def box(cli, store_root: Path, tmp_path: Path) -> Iterator[Box]:
    from layerctl.store.repo import Store
    from tests.layerhelpers import release_containers

    cli("import", _rootfs(tmp_path / "src"), "small")
    cli("create", "--name", "c1", "small")
    merged = cli("mount", "c1").stdout.strip()
    try:
        yield Box(cli, store_root, tmp_path, merged)
    finally:
        release_containers(Store(str(store_root)))


def test_undo_reset_brings_back_every_pending_change(box: Box) -> None:
    box.edit()
    before = box.state()
    assert before[1].count("\n") >= 8
    box.cli("reset", "c1")
    assert box.cli("status", "c1").stdout == ""
    out = box.cli("undo").stdout
    assert "undid: layerctl reset c1" in out
    box.assert_state(before)
    assert box.cli("fsck").returncode == 0


def test_undo_reset_to_another_layer(box: Box) -> None:
    (Path(box.merged) / "etc" / "hostname").write_text("first\n")
    first = box.cli("commit", "-q", "c1").stdout.strip()
    box.edit()
    before = box.state()
    box.cli("reset", "c1", "small")
    assert box.refs()[_cref(box)] != before[0][_cref(box)]
    box.cli("undo")
    box.assert_state(before)
    assert box.refs()[_cref(box)] == first


def _cref(box: Box) -> str:
    return next(r for r in box.refs() if r.startswith("refs/containers/"))


def test_undo_restore(box: Box) -> None:
    box.edit()
    before = box.state()
    box.cli("restore", "c1", "/etc/motd", "/srv")
    assert "C /etc/motd\n" not in box.cli("status", "c1").stdout
    box.cli("undo")
    box.assert_state(before)


def test_undo_commit_with_tag(box: Box) -> None:
    box.edit()
    before = box.state()
    layer = box.cli("commit", "-q", "-m", "work", "c1", "app:v1").stdout.strip()
    assert box.cli("status", "c1").stdout == ""
    assert box.refs()["refs/images/app/_tags/v1"] == layer
    box.cli("undo")
    box.assert_state(before)  # no app:v1, the base back, every change pending again
    # the layer is not lost: the reflog names it
    assert box.cli("checkout", "app:v1@{1}", box.tmp / "co").returncode == 0


def test_undo_tag_and_rmi(box: Box) -> None:
    box.cli("commit", "--allow-empty", "-q", "c1", "small:next")
    original = box.checkout("small", "orig")
    before = box.refs()
    box.cli("tag", "small:next", "small")  # moves small:latest
    assert box.refs() != before
    box.cli("undo")
    assert box.refs() == before
    box.cli("rmi", "-f", "small")
    assert "refs/images/small/_tags/latest" not in box.refs()
    box.cli("undo")
    assert box.refs() == before
    assert compare(original, box.checkout("small", "after")) == []


def test_undo_load_retag(box: Box) -> None:
    archive = box.tmp / "small.tar"
    box.cli("save", "-q", "-o", archive, "small")
    (Path(box.merged) / "etc" / "hostname").write_text("changed\n")
    box.cli("commit", "-q", "c1", "small")  # small:latest moves to the new layer
    before = box.state()
    box.cli("load", "-q", "-i", archive)  # ...and load moves it back
    assert box.refs()["refs/images/small/_tags/latest"] != before[0][
        "refs/images/small/_tags/latest"]
    box.cli("undo")
    box.assert_state(before)


def test_undo_again_goes_further_back(box: Box) -> None:
    start = box.refs()
    box.cli("tag", "small", "x:1")
    box.cli("tag", "small", "x:2")
    box.cli("undo")
    assert "refs/images/x/_tags/2" not in box.refs()
    assert "refs/images/x/_tags/1" in box.refs()
    box.cli("undo")
    assert box.refs() == start


def test_undo_refuses_when_a_ref_moved_outside_the_journal(box: Box) -> None:
    box.cli("tag", "small", "x:1")
    other = box.cli("commit", "--allow-empty", "-q", "c1").stdout.strip()
    # moved behind layerctl's back: undo cannot know what to restore
    git(box.root, "update-ref", "refs/images/x/_tags/1", other)
    box.cli("undo")  # the empty commit: moves the container base back
    before = box.refs()
    r = box.cli("undo", check=False)
    assert r.returncode != 0
    assert "x:1 was moved since" in r.stderr and "Traceback" not in r.stderr
    assert box.refs() == before


def test_undo_dry_run_changes_nothing(box: Box) -> None:
    box.edit()
    box.cli("reset", "c1")
    after = box.state()
    out = box.cli("undo", "--dry-run").stdout
    assert "would undo: layerctl reset c1" in out
    box.assert_state(after)


def test_nothing_to_undo(cli, store_root: Path) -> None:
    r = cli("undo", check=False)
    assert r.returncode != 0 and "nothing to undo" in r.stderr


# -- reflog --------------------------------------------------------------------------


def test_reflog_is_git_readable_and_names_old_values(box: Box) -> None:
    first = box.refs()["refs/images/small/_tags/latest"]
    (Path(box.merged) / "etc" / "hostname").write_text("second\n")
    second = box.cli("commit", "-q", "-m", "two", "c1", "small").stdout.strip()
    box.cli("rmi", "-f", "small")
    box.cli("undo")
    r = git(box.root, "reflog", "show", "--format=%H %gs", "refs/images/small/_tags/latest")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(second) and "undo" in lines[0]
    assert any(line.startswith(first) for line in lines)
    out = box.cli("reflog", "small").stdout.splitlines()
    assert out[0] == f"{second[:12]} small@{{0}}: undo: layerctl rmi -f small"
    assert any("rmi: small:latest (deleted)" in line for line in out)
    # small@{n} wherever a layer is taken
    assert _layer(box, "small@{3}") == first
    assert _layer(box, "small@{0}~1") == first
    r = box.cli("inspect", "small@{1}", check=False)
    assert r.returncode != 0 and "deleted at that point" in r.stderr
    assert git(box.root, "fsck", "--strict").returncode == 0


def _layer(box: Box, ref: str) -> str:
    import json

    return json.loads(box.cli("inspect", ref).stdout)[0]["Layerctl"]["Layer"]


# -- crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["undo.snapshot-written", "undo.snapshot-recorded"])
def test_kill_during_reset_loses_nothing(box: Box, point: str) -> None:
    box.edit()
    before = box.state()
    r = box.cli("reset", "c1", check=False, env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED
    _fscks(box)
    box.cli("reset", "c1")
    box.cli("undo")
    box.assert_state(before)


@pytest.mark.parametrize("point", ["undo.before-apply", "undo.apply-entry#3",
                                   "undo.move-ref", "undo.before-done"])
def test_kill_during_undo_then_undo_again(box: Box, point: str) -> None:
    box.edit()
    before = box.state()
    box.cli("reset", "c1", "small")
    if point == "undo.move-ref":  # only an undo that moves a ref reaches it
        box.cli("undo")
        box.cli("tag", "small", "x:1")
        before = box.state()
        box.cli("rmi", "x:1")
    r = box.cli("undo", check=False, env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED
    _fscks(box)
    box.cli("undo")  # finishes the undo the kill cut short
    box.assert_state(before)
    _fscks(box)


def test_kill_after_logging_a_move_that_never_landed(box: Box) -> None:
    before = box.refs()
    r = box.cli("tag", "small", "x:1", check=False, env={"LAYERCTL_CRASH_AT": "ref.logged"})
    assert r.returncode == KILLED
    assert box.refs() == before
    _fscks(box)
    box.cli("undo")  # nothing to move back: the tag never moved
    assert box.refs() == before


def _fscks(box: Box) -> None:
    r = git(box.root, "fsck", "--strict")
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout + r.stderr
    assert box.cli("fsck").returncode == 0
