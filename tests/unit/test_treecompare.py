"""Tests for the fidelity comparator in tests/treecompare.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.treecompare import FIELDS, ROOT, assert_same_tree, compare, snapshot

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")
ODD_NAME = b"odd \xff\nname"
FIXED_NS = 1_600_000_000_123_456_789


def _xattrs_supported(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def build_tree(root: Path) -> Path:
    """A small tree with one of everything the comparator records."""
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("box\n")
    (root / "etc/empty").mkdir()
    (root / "usr/bin").mkdir(parents=True)
    passwd = root / "usr/bin/passwd"
    passwd.write_bytes(b"\x7fELF fake passwd")
    passwd.chmod(0o4755)
    (root / "usr/bin/editor").symlink_to("../../etc/hostname")
    (root / "usr/bin/dangling").symlink_to("nowhere")
    os.link(root / "usr/bin/passwd", root / "usr/bin/passwd-link")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "shared").mkdir()
    (root / "shared").chmod(0o2775)
    os.mkfifo(root / "tmp/fifo")
    (root / "home/user").mkdir(parents=True)
    (root / "home/user/.profile").write_text("PATH=/bin\n")
    (root / "home/user/secret").write_text("x")
    (root / "home/user/secret").chmod(0o600)
    os.mkdir(os.path.join(os.fsencode(root), ODD_NAME))
    if IS_ROOT:
        for p in (root / "home/user", root / "home/user/.profile", root / "home/user/secret"):
            os.chown(p, 1000, 1000)
        os.lchown(root / "usr/bin/dangling", 1000, 1000)
        (root / "dev").mkdir()
        os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    if _xattrs_supported(root):
        os.setxattr(root / "etc/hostname", "user.origin", b"test")
        os.setxattr(root / "etc", "user.dir", b"\x00binary\xff")
    # Deterministic times, deepest first so the directory times stick.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(FIXED_NS, FIXED_NS), follow_symlinks=False)
    os.utime(root, ns=(FIXED_NS, FIXED_NS))
    return root


def cp_a(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", "--preserve=all", str(src), str(dst)], check=True)
    return dst


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "a")


@pytest.fixture
def copy(tree: Path, tmp_path: Path) -> Path:
    return cp_a(tree, tmp_path / "b")


# --- snapshot ------------------------------------------------------------


def test_snapshot_records_each_kind(tree: Path):
    snap = snapshot(tree)
    assert snap[ROOT].type == "dir"
    assert snap[ROOT].mtime == FIXED_NS

    f = snap[b"etc/hostname"]
    assert (f.type, f.size, f.mode) == ("file", 4, 0o666 & ~_umask())
    assert f.sha256 == hashlib.sha256(b"box\n").hexdigest()
    assert f.mtime == FIXED_NS
    assert f.hardlink is None

    assert snap[b"etc/empty"].type == "dir"
    assert snap[b"usr/bin/passwd"].mode == 0o4755
    assert snap[b"tmp"].mode == 0o1777
    assert snap[b"shared"].mode == 0o2775
    assert snap[b"home/user/secret"].mode == 0o600

    link = snap[b"usr/bin/editor"]
    assert (link.type, link.target, link.size) == ("symlink", b"../../etc/hostname", 18)
    assert link.mtime == FIXED_NS
    assert link.sha256 is None
    assert snap[b"usr/bin/dangling"].target == b"nowhere"

    assert snap[b"tmp/fifo"].type == "fifo"
    assert snap[b"usr/bin/passwd"].hardlink == b"usr/bin/passwd"
    assert snap[b"usr/bin/passwd-link"].hardlink == b"usr/bin/passwd"
    assert snap[ODD_NAME].type == "dir"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@needs_root
def test_snapshot_owner_and_device(tree: Path):
    snap = snapshot(tree)
    assert (snap[b"home/user/.profile"].uid, snap[b"home/user/.profile"].gid) == (1000, 1000)
    assert snap[b"usr/bin/dangling"].uid == 1000  # lchown, not the target
    assert snap[b"etc/hostname"].uid == 0
    dev = snap[b"dev/null"]
    assert (dev.type, dev.rdev, dev.mode) == ("char", (1, 3), 0o666 & ~_umask())


def test_snapshot_xattrs(tree: Path):
    if not _xattrs_supported(tree.parent):
        pytest.skip("filesystem of tmp_path has no user xattrs")
    snap = snapshot(tree)
    assert snap[b"etc/hostname"].xattrs == (("user.origin", b"test"),)
    assert snap[b"etc"].xattrs == (("user.dir", b"\x00binary\xff"),)
    assert snap[b"usr/bin/passwd"].xattrs == ()


def test_snapshot_str_bytes_and_pathlike_agree(tree: Path):
    assert snapshot(str(tree)) == snapshot(os.fsencode(tree)) == snapshot(tree)


def test_snapshot_keys_are_sorted_relative_bytes(tree: Path):
    keys = list(snapshot(tree))
    assert keys == sorted(keys)
    assert all(isinstance(k, bytes) and not k.startswith(b"/") for k in keys)


def test_hardlink_to_outside_the_tree_is_not_a_group(tmp_path: Path):
    root = tmp_path / "t"
    root.mkdir()
    (tmp_path / "outside").write_text("x")
    os.link(tmp_path / "outside", root / "inside")
    assert snapshot(root)[b"inside"].hardlink is None


def test_hardlink_group_leader_is_smallest_path(tmp_path: Path):
    root = tmp_path / "t"
    (root / "z").mkdir(parents=True)
    (root / "z/c").write_text("x")
    os.link(root / "z/c", root / "b")
    os.link(root / "z/c", root / "z/a")
    snap = snapshot(root)
    assert {snap[p].hardlink for p in (b"b", b"z/a", b"z/c")} == {b"b"}


def test_snapshot_does_not_follow_symlinked_root(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real/f").write_text("x")
    (tmp_path / "link").symlink_to("real")
    snap = snapshot(tmp_path / "link")
    assert list(snap) == [ROOT]
    assert snap[ROOT].type == "symlink"


def test_snapshot_socket(tmp_path: Path):
    import socket

    root = tmp_path / "s"
    root.mkdir()
    path = root / "sock"
    if len(os.fsencode(path)) > 100:
        pytest.skip("tmp_path too long for an AF_UNIX socket")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert snapshot(root)[b"sock"].type == "socket"


# --- compare ---------------------------------------------------------------


def test_cp_a_copy_is_identical(tree: Path, copy: Path):
    assert compare(tree, copy) == []
    assert_same_tree(tree, copy)


def test_compare_accepts_snapshots(tree: Path, copy: Path):
    assert compare(snapshot(tree), snapshot(copy)) == []
    assert compare(snapshot(tree), copy) == []


def _write(p: Path, data: bytes) -> None:
    """Rewrite content, keeping mtime, so only the content fields differ."""
    st = os.lstat(p)
    p.write_bytes(data)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _keep_parent_mtime(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    """Run a mutation, then restore mtimes of every directory it touched."""

    def wrapped(b: Path) -> None:
        times = {d: os.lstat(d).st_mtime_ns for d in [b, *(p for p in b.rglob("*") if p.is_dir())]}
        fn(b)
        for d, ns in times.items():
            if d.exists():
                os.utime(d, ns=(ns, ns))

    return wrapped


def _retarget(b: Path) -> None:
    link = b / "usr/bin/editor"
    link.unlink()
    link.symlink_to("/etc/hostname")  # 13 bytes instead of 18: size differs too
    os.utime(link, ns=(FIXED_NS, FIXED_NS), follow_symlinks=False)


def _break_hardlink(b: Path) -> None:
    p = b / "usr/bin/passwd-link"
    data = p.read_bytes()
    p.unlink()
    p.write_bytes(data)
    p.chmod(0o4755)
    os.utime(p, ns=(FIXED_NS, FIXED_NS))


def _fifo_to_file(b: Path) -> None:
    (b / "tmp/fifo").unlink()
    (b / "tmp/fifo").write_bytes(b"")
    os.utime(b / "tmp/fifo", ns=(FIXED_NS, FIXED_NS))


def _new_hardlink(b: Path) -> None:
    os.link(b / "etc/hostname", b / "etc/hostname2")


MUTATIONS: list[tuple[str, Callable[[Path], None], list[str]]] = [
    (
        "remove file",
        _keep_parent_mtime(lambda b: (b / "home/user/.profile").unlink()),
        ["missing in b: home/user/.profile"],
    ),
    (
        "add file",
        _keep_parent_mtime(lambda b: (b / "etc/new").write_text("n")),
        ["missing in a: etc/new"],
    ),
    (
        "remove empty dir",
        _keep_parent_mtime(lambda b: (b / "etc/empty").rmdir()),
        ["missing in b: etc/empty"],
    ),
    (
        "drop setuid",
        lambda b: (b / "usr/bin/passwd").chmod(0o755),
        # passwd-link is the same inode, so it changes too.
        ["usr/bin/passwd: mode 0o4755 != 0o755", "usr/bin/passwd-link: mode 0o4755 != 0o755"],
    ),
    ("drop sticky", lambda b: (b / "tmp").chmod(0o777), ["tmp: mode 0o1777 != 0o777"]),
    ("drop setgid", lambda b: (b / "shared").chmod(0o775), ["shared: mode 0o2775 != 0o775"]),
    (
        "content same size",
        lambda b: _write(b / "etc/hostname", b"xyz\n"),
        ["etc/hostname: sha256 "],
    ),
    (
        "content other size",
        lambda b: _write(b / "etc/hostname", b"longer\n"),
        ["etc/hostname: size 4 != 7", "etc/hostname: sha256 "],
    ),
    (
        "touch file",
        lambda b: os.utime(b / "etc/hostname", ns=(FIXED_NS, FIXED_NS + 1)),
        [f"etc/hostname: mtime {FIXED_NS!r} != {FIXED_NS + 1!r}"],
    ),
    (
        "touch root",
        lambda b: os.utime(b, ns=(FIXED_NS, FIXED_NS + 5)),
        [f".: mtime {FIXED_NS!r} != {FIXED_NS + 5!r}"],
    ),
    (
        "touch symlink",
        lambda b: os.utime(b / "usr/bin/editor", ns=(0, 7), follow_symlinks=False),
        [f"usr/bin/editor: mtime {FIXED_NS!r} != 7"],
    ),
    (
        "retarget symlink",
        _keep_parent_mtime(_retarget),
        ["usr/bin/editor: size 18 != 13", "usr/bin/editor: target "],
    ),
    ("fifo becomes file", _keep_parent_mtime(_fifo_to_file), ["tmp/fifo: type fifo != file"]),
    (
        "break hardlink",
        _keep_parent_mtime(_break_hardlink),
        [
            "usr/bin/passwd: hardlink usr/bin/passwd != none",
            "usr/bin/passwd-link: hardlink usr/bin/passwd != none",
        ],
    ),
    (
        "new hardlink",
        _keep_parent_mtime(_new_hardlink),
        ["etc/hostname: hardlink none != etc/hostname", "missing in a: etc/hostname2"],
    ),
    (
        "rename odd name",
        _keep_parent_mtime(lambda b: os.rename(os.fsencode(b) + b"/" + ODD_NAME, b / "plain")),
        ["missing in a: plain", "missing in b: odd \\xff\\nname"],
    ),
]


@pytest.mark.parametrize(
    "mutate,expected", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_compare_detects(tree: Path, copy: Path, mutate, expected):
    mutate(copy)
    diffs = compare(tree, copy)
    assert len(diffs) == len(expected), diffs
    for line, prefix in zip(sorted(diffs), sorted(expected), strict=True):
        assert line.startswith(prefix), (line, prefix)


@needs_root
def test_compare_detects_owner(tree: Path, copy: Path):
    os.chown(copy / "home/user/secret", 1000, 0)
    os.lchown(copy / "usr/bin/dangling", 0, 1000)
    assert compare(tree, copy) == [
        "home/user/secret: gid 1000 != 0",
        "usr/bin/dangling: uid 1000 != 0",
    ]


@needs_root
def test_compare_detects_device_changes(tree: Path, copy: Path):
    null = copy / "dev/null"
    null.unlink()
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    os.chmod(null, 0o666 & ~_umask())
    os.utime(null, ns=(FIXED_NS, FIXED_NS))
    os.utime(copy / "dev", ns=(FIXED_NS, FIXED_NS))
    assert compare(tree, copy) == ["dev/null: rdev 1:3 != 1:5"]

    null.unlink()
    os.mknod(null, 0o666 | stat.S_IFBLK, os.makedev(1, 3))
    os.chmod(null, 0o666 & ~_umask())
    os.utime(null, ns=(FIXED_NS, FIXED_NS))
    os.utime(copy / "dev", ns=(FIXED_NS, FIXED_NS))
    assert compare(tree, copy) == ["dev/null: type char != block"]


def test_compare_detects_xattr_changes(tree: Path, copy: Path):
    if not _xattrs_supported(tree.parent):
        pytest.skip("filesystem of tmp_path has no user xattrs")
    os.setxattr(copy / "etc/hostname", "user.origin", b"changed")
    os.removexattr(copy / "etc", "user.dir")
    os.setxattr(copy / "etc/empty", "user.new", b"")
    assert compare(tree, copy) == [
        "etc: xattr user.dir missing in b",
        "etc/empty: xattr user.new missing in a",
        "etc/hostname: xattr user.origin b'test' != b'changed'",
    ]


def test_cp_without_preserve_is_not_identical(tree: Path, tmp_path: Path):
    """Sanity check that the comparator is not trivially satisfied."""
    dst = tmp_path / "plain"
    subprocess.run(["cp", "-r", str(tree), str(dst)], check=True)
    diffs = compare(tree, dst)
    assert any(": mtime " in d for d in diffs)
    assert any("hardlink" in d for d in diffs)


# --- ignore ------------------------------------------------------------------


def test_ignore_field_everywhere(tree: Path, copy: Path):
    os.utime(copy, ns=(0, 1))
    os.utime(copy / "etc/hostname", ns=(0, 1))
    assert len(compare(tree, copy)) == 2
    assert compare(tree, copy, ignore={"mtime"}) == []


def test_ignore_field_on_root_only(tree: Path, copy: Path):
    os.utime(copy, ns=(0, 1))
    assert compare(tree, copy, ignore={"mtime:."}) == []
    os.utime(copy / "etc/hostname", ns=(0, 1))
    assert compare(tree, copy, ignore={"mtime:."}) == [f"etc/hostname: mtime {FIXED_NS} != 1"]


def test_ignore_glob_and_star(tree: Path, copy: Path):
    shutil.rmtree(copy / "home")
    os.utime(copy, ns=(FIXED_NS, FIXED_NS))
    assert compare(tree, copy) != []
    assert compare(tree, copy, ignore={"*:home", "*:home/*"}) == []


def test_ignore_type_still_compares_presence(tree: Path, copy: Path):
    _keep_parent_mtime(_fifo_to_file)(copy)
    diffs = compare(tree, copy, ignore={"type"})
    # Type ignored: the remaining fields are compared as usual.
    assert diffs == ["tmp/fifo: size none != 0", "tmp/fifo: sha256 none != e3b0c44298fc1c14"]


def test_ignore_rejects_unknown_field(tree: Path):
    with pytest.raises(ValueError, match="atime"):
        compare(tree, tree, ignore={"atime"})
    with pytest.raises(TypeError):
        compare(tree, tree, ignore="mtime")


def test_fields_are_documented():
    import tests.treecompare as treecompare

    for name in FIELDS:
        assert name in (treecompare.__doc__ or "")


def test_assert_same_tree_message(tree: Path, copy: Path):
    (copy / "etc/hostname").chmod(0o600)
    with pytest.raises(AssertionError, match=r"1 difference\(s\):\n  etc/hostname: mode"):
        assert_same_tree(tree, copy)
