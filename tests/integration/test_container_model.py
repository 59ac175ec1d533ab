"""A commit is exactly what the container saw: random operation sequences, both drivers.

One container goes through a random sequence of filesystem operations
(create, modify, delete, file/dir/symlink swaps, delete-and-recreate under the
same name, chmod/chown/xattr, hardlinks) with commits and remounts at random
points. After
every commit the layer's checkout must equal the container's filesystem entry
by entry, with all metadata, and `status` must be clean.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from layerctl import containers as C
from layerctl.containers.worktree import under
from layerctl.errors import Conflict
from layerctl.images import resolve
from layerctl.store.checkout import checkout
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from tests.layerhelpers import import_dir, release_containers
from tests.treecompare import compare, snapshot

pytestmark = pytest.mark.needs_root

PARENTS = ["", "etc", "usr/share/doc", "usr/share/doc/pkg", "w", "w/d"]
NAMES = ["a", "pkg", "d", "x"]
CONTENTS = [b"", b"one\n", b"two\n" * 100]

paths = st.builds(lambda p, n: f"{p}/{n}" if p else n, st.sampled_from(PARENTS),
                  st.sampled_from(NAMES))
operation = st.one_of(
    st.tuples(st.just("write"), paths, st.sampled_from(CONTENTS)),
    st.tuples(st.just("append"), paths),
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("rm"), paths),
    st.tuples(st.just("symlink"), paths, st.sampled_from(["a", "../etc", "/nowhere"])),
    st.tuples(st.just("chmod"), paths, st.sampled_from([0o600, 0o755, 0o4755, 0o1777])),
    st.tuples(st.just("chown"), paths, st.sampled_from([0, 1000])),
    st.tuples(st.just("xattr"), paths, st.sampled_from([b"1", b"2"])),
    st.tuples(st.just("link"), paths, paths),
    st.tuples(st.just("commit")),
    st.tuples(st.just("remount")),
)


def _base_rootfs(top: Path) -> None:
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "a").write_text("base\n")
    (top / "etc" / "x").write_text("x\n")
    doc = top / "usr" / "share" / "doc"
    (doc / "pkg").mkdir(parents=True)
    (doc / "pkg" / "a").write_text("copyright\n")
    (doc / "pkg" / "x").write_text("changelog\n")
    (doc / "pkg" / "d").mkdir()
    (doc / "pkg" / "d" / "deep").write_text("deep\n")
    (doc / "a").write_text("readme\n")
    os.link(doc / "a", doc / "x")
    os.symlink("pkg", doc / "d")
    (top / "w").mkdir()


def _clear(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _apply(root: str, op: tuple) -> None:
    """Do one operation as a process in the container would; one that cannot apply
    (a parent is a file, a source is missing) is a no-op, as a failed shell command."""
    kind, path = op[0], os.path.join(root, op[1]) if len(op) > 1 else ""
    try:
        if kind in ("write", "mkdir", "symlink"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _clear(path)
            if kind == "write":
                Path(path).write_bytes(op[2])
            elif kind == "mkdir":
                os.mkdir(path)
            else:
                os.symlink(op[2], path)
        elif kind == "append":
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "ab") as f:
                    f.write(b"more\n")
        elif kind == "rm":
            _clear(path)
        elif kind == "chmod":
            if os.path.lexists(path) and not os.path.islink(path):
                os.chmod(path, op[2])
        elif kind == "chown":
            if os.path.lexists(path):
                os.lchown(path, op[2], op[2])
        elif kind == "xattr":
            if os.path.lexists(path) and not os.path.islink(path):
                os.setxattr(path, "user.t", op[2], follow_symlinks=False)
        elif kind == "link":
            dst = os.path.join(root, op[2])
            inside = (path + "/").startswith(dst + "/")  # dst is the source or its parent
            if os.path.isfile(path) and not os.path.islink(path) and not inside:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                _clear(dst)
                os.link(path, dst)
    except (NotADirectoryError, FileExistsError):
        pass  # a parent on the way is not a directory


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    top = tmp_path_factory.mktemp("model")
    rootfs = top / "rootfs"
    _base_rootfs(rootfs)
    s = Store(str(top / "store"))
    import_dir(s, rootfs, "model:base")
    yield s
    release_containers(s)


def _check_commit(store: Store, name: str, root: str, step: int) -> None:
    result = C.commit(store, name, message=f"step {step}", allow_empty=True)
    with tempfile.TemporaryDirectory(dir=store.path("cache")) as out:
        dest = os.path.join(out, "co")
        checkout(store, read_layer(store, result.layer_id).root, dest)
        diffs = compare(dest, root)
    assert not diffs, f"after commit at step {step}, layer != container:\n" + "\n".join(diffs)
    left = C.status(store, name)
    assert not left, f"status not clean after commit at step {step}: " + ", ".join(
        f"{ch.status} /{ch.path.decode()}" for ch in left)


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
@settings(max_examples=int(os.environ.get("MODEL_EXAMPLES", "100")), deadline=None,
          derandomize=not os.environ.get("MODEL_EXAMPLES"),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=40))
def test_commit_equals_what_the_container_saw(model_store: Store, driver: str, ops: list) -> None:
    c, _notice = C.create(model_store, "model:base", driver=driver)
    try:
        root = C.mount(model_store, c.name) if driver == "overlay" else C.root_dir(model_store, c)
        for step, op in enumerate([*ops, ("commit",)]):
            if op[0] == "commit":
                event(f"changes committed: {min(len(C.status(model_store, c.name)), 5)}")
                _check_commit(model_store, c.name, root, step)
            elif op[0] == "remount":
                if driver == "overlay":
                    C.umount(model_store, c.name)
                    assert C.mount(model_store, c.name) == root
            else:
                _apply(root, op)
    finally:
        C.remove(model_store, c.name, force=True)


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_dir_recreated_under_removed_parent_keeps_no_old_children(model_store: Store,
                                                                   driver: str) -> None:
    """rm -rf a directory, re-create a child directory of the same name with one new
    file: the commit holds that file only (overlay used to resurrect the old ones)."""
    c, _notice = C.create(model_store, "model:base", driver=driver)
    try:
        root = C.mount(model_store, c.name) if driver == "overlay" else C.root_dir(model_store, c)
        shutil.rmtree(os.path.join(root, "usr/share/doc"))
        os.makedirs(os.path.join(root, "usr/share/doc/pkg"))
        Path(root, "usr/share/doc/pkg/NEWS").write_text("x\n")
        _check_commit(model_store, c.name, root, 0)
        assert sorted(os.listdir(os.path.join(root, "usr/share/doc/pkg"))) == ["NEWS"]
    finally:
        C.remove(model_store, c.name, force=True)


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_committed_dir_replaced_by_file(model_store: Store, driver: str) -> None:
    """Commit a directory, then replace it with a file in the same container."""
    c, _notice = C.create(model_store, "model:base", driver=driver)
    try:
        root = C.mount(model_store, c.name) if driver == "overlay" else C.root_dir(model_store, c)
        os.makedirs(os.path.join(root, "w/d1/sub"))
        Path(root, "w/d1/sub/f").write_text("1\n")
        _check_commit(model_store, c.name, root, 0)
        shutil.rmtree(os.path.join(root, "w/d1"))
        Path(root, "w/d1").write_text("now a file\n")
        _check_commit(model_store, c.name, root, 1)
    finally:
        C.remove(model_store, c.name, force=True)


restore_picks = st.lists(st.one_of(paths, st.sampled_from([p for p in PARENTS if p])),
                         min_size=1, max_size=3)


def _under(snap: dict, picks: list[bytes]) -> dict:
    return {k: v for k, v in snap.items() if under(k, picks)}


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
@settings(max_examples=int(os.environ.get("MODEL_EXAMPLES", "60")), deadline=None,
          derandomize=not os.environ.get("MODEL_EXAMPLES"),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(operation.filter(lambda op: op[0] != "commit"), min_size=1, max_size=25),
       picks=restore_picks)
def test_restore_puts_back_exactly_the_base(model_store: Store, driver: str, ops: list,
                                            picks: list[str]) -> None:
    """After random changes, `restore` of some paths makes everything at and under them
    what the base has (every field but which hardlink group outside them an entry is
    in), and `status` shows nothing pending there but such groups."""
    c, _notice = C.create(model_store, "model:base", driver=driver)
    try:
        root = C.mount(model_store, c.name) if driver == "overlay" else C.root_dir(model_store, c)
        for op in ops:
            if op[0] == "remount":
                if driver == "overlay":
                    C.umount(model_store, c.name)
                    C.mount(model_store, c.name)
            else:
                _apply(root, op)
        try:
            restored = C.restore(model_store, c.name, picks)
        except Conflict:
            event("restore refused: a parent is gone")
            return
        chosen = [p.encode() for p in picks]
        event(f"restored entries pending before: {min(len(restored), 5)}")
        with tempfile.TemporaryDirectory(dir=model_store.path("cache")) as out:
            dest = os.path.join(out, "co")
            base = read_layer(model_store, resolve(model_store, "model:base"))
            checkout(model_store, base.root, dest)
            diffs = compare(_under(snapshot(dest), chosen), _under(snapshot(root), chosen),
                            ignore=("hardlink",))
        assert not diffs, f"restore of {picks} left:\n" + "\n".join(diffs)
        # pending there may stay only which group an entry is in (a member outside the
        # paths changed its file, so the base's group cannot be whole)
        left = [ch for ch in C.status(model_store, c.name)
                if under(ch.path, chosen)
                and not (ch.old is not None and ch.new is not None
                         and ch.old_blob == ch.new_blob
                         and ch.old.without_link() == ch.new.without_link())]
        assert not left, f"still pending after restore of {picks}: " + ", ".join(
            f"{ch.status} /{ch.path.decode()}" for ch in left)
    finally:
        C.remove(model_store, c.name, force=True)
