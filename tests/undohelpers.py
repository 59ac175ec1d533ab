"""A small image and a mounted container with a way to capture and compare their
whole state (refs, `status`, every entry of the tree): for undo, stash and hunk
staging tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.treecompare import compare, snapshot


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

    def edit_more(self) -> None:
        """Harder kinds: a hardlink pair, a directory replaced (opaque), an xattr, a
        fifo, an emptied directory."""
        m = Path(self.merged)
        (m / "opt").mkdir(exist_ok=True)
        (m / "opt" / "one").write_text("linked\n")
        os.link(m / "opt" / "one", m / "opt" / "two")
        os.link(m / "usr" / "bin" / "tool", m / "usr" / "bin" / "tool2")
        subprocess.run(["rm", "-rf", str(m / "etc" / "conf.d")], check=True)
        (m / "etc" / "conf.d").mkdir()
        (m / "etc" / "conf.d" / "c.conf").write_text("c=1\n")
        os.setxattr(m / "etc" / "motd", "user.note", b"kept")
        os.mkfifo(m / "srv" / "pipe")
        (m / "srv" / "old").unlink()


@contextlib.contextmanager
def make_box(cli, store_root: Path, tmp_path: Path,  # noqa: ANN001
             driver: str = "overlay") -> Iterator[Box]:
    """Image "small" and container c1 on it, mounted; unmounted afterwards."""
    from layerctl.store.repo import Store
    from tests.layerhelpers import release_containers

    cli("import", _rootfs(tmp_path / "src"), "small")
    cli("create", "--driver", driver, "--name", "c1", "small")
    merged = cli("mount", "c1").stdout.strip()
    try:
        yield Box(cli, store_root, tmp_path, merged)
    finally:
        release_containers(Store(str(store_root)))


def fscks(box: Box) -> None:
    r = git(box.root, "fsck", "--strict")
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout + r.stderr
    assert box.cli("fsck").returncode == 0
