"""The merge engine (layerctl/merge.py) on its own: merge3 against the real
`git merge-file`, and merge_trees' conflict rules on stored trees."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from layerctl.merge import (
    ADD_ADD,
    CONTENT,
    DELETE_MODIFY,
    METADATA,
    MODIFY_DELETE,
    PACKAGE_DB,
    PARENT,
    TYPE,
    merge3,
    merge_trees,
)
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import lookup
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta
from layerctl.store.objects import BLOB
from layerctl.store.repo import Store

T0 = 1_700_000_000_000_000_000


def _git_merge_file(tmp: Path, base: bytes, ours: bytes, theirs: bytes) -> tuple[bytes, bool]:
    for name, data in (("o", ours), ("b", base), ("t", theirs)):
        (tmp / name).write_bytes(data)
    r = subprocess.run(["git", "merge-file", "-p", "-L", "ours", "-L", "base", "-L", "theirs",
                        str(tmp / "o"), str(tmp / "b"), str(tmp / "t")], capture_output=True)
    assert r.returncode >= 0
    return r.stdout, r.returncode == 0


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_merge3_agrees_with_git_merge_file(tmp_path):
    """Unique lines (no ambiguous alignment), random edits on each side: the same
    verdict as git merge-file, and the same text when clean."""
    rng = random.Random(15)
    for _ in range(300):
        n = rng.randint(0, 30)
        base = [b"line %d\n" % i for i in range(n)]

        def edit(lines: list[bytes], tag: bytes) -> list[bytes]:
            out = list(lines)
            for _ in range(rng.randint(0, 3)):
                op = rng.choice("cid")
                i = rng.randint(0, len(out))
                if op == "i":
                    out.insert(i, b"%s %d\n" % (tag, rng.randint(0, 10**6)))
                elif out and i < len(out):
                    if op == "d":
                        del out[i]
                    else:
                        out[i] = b"%s changed %d\n" % (tag, i)
            return out

        ours, theirs = edit(base, b"ours"), edit(base, b"theirs")
        b, o, t = (b"".join(x) for x in (base, ours, theirs))
        got, clean = merge3(b, o, t, ("ours", "theirs"))
        want, want_clean = _git_merge_file(tmp_path, b, o, t)
        assert clean == want_clean, (b, o, t, got, want)
        if clean:
            assert got == want


def test_merge3_conflict_markers_and_missing_newline():
    text, clean = merge3(b"a\nb\n", b"a\nB", b"a\nX\n", ("new base", "layer 1"))
    assert not clean
    assert text == b"a\n<<<<<<< new base\nB\n=======\nX\n>>>>>>> layer 1\n"


# -- trees -----------------------------------------------------------------------------


def f(size: int = 0, mode: int = 0o644, uid: int = 0, mtime: int = T0) -> Meta:
    return Meta(FILE, mode, uid, 0, mtime, size)


def tree(store: Store, base, edit):
    ed = TreeEditor(store, base, None if base else Meta(DIR, 0o755))
    with store.pack_writer() as w:
        def put(path: bytes, data: bytes, **kw) -> None:
            ed.set_file(path, f(len(data), **kw), w.add(BLOB, data))
        edit(ed, put, w)
        root = ed.write(w)
        w.finish()
    store.landed()
    return root


def base_tree(store: Store):
    def edit(ed, put, w):
        ed.set_dir(b"etc", Meta(DIR, 0o755, mtime_ns=T0))
        ed.set_dir(b"var/lib/dpkg".split(b"/")[0], Meta(DIR, 0o755, mtime_ns=T0))
        ed.set_dir(b"var/lib", Meta(DIR, 0o755, mtime_ns=T0))
        ed.set_dir(b"var/lib/dpkg", Meta(DIR, 0o755, mtime_ns=T0))
        ed.set_dir(b"doc", Meta(DIR, 0o755, mtime_ns=T0))
        put(b"etc/conf", b"a\nb\nc\nd\ne\n")
        put(b"etc/mode", b"x\n")
        put(b"var/lib/dpkg/status", b"Package: a\nVersion: 1\n\nPackage: b\nVersion: 1\n")
        put(b"doc/readme", b"r\n")
        put(b"bin", b"binary\0data")
    return tree(store, None, edit)


def merge(store, base, ours_edit, theirs_edit, force=False):
    ours = tree(store, base, ours_edit)
    theirs = tree(store, base, theirs_edit)
    with store.pack_writer() as w:
        result = merge_trees(store, w, base, ours, theirs, force_theirs=force)
        w.finish()
    store.landed()
    return result


def kinds(result) -> set[tuple[bytes, str]]:
    return {(c.path, c.kind) for c in result.conflicts}


def blob(store, root, path):
    found = lookup(store, root, path)
    return None if found is None else store.read_blob(found[1])


def test_clean_merges(store):
    base = base_tree(store)
    r = merge(store, base,
              lambda ed, put, w: (put(b"etc/conf", b"A\nb\nc\nd\ne\n"),
                                  put(b"etc/mode", b"x\n", mode=0o600)),
              lambda ed, put, w: (put(b"etc/conf", b"a\nb\nc\nd\nE\n"),
                                  put(b"etc/mode", b"x\n", uid=7, mtime=T0 + 5),
                                  put(b"etc/new", b"n\n")))
    assert r.conflicts == []
    assert blob(store, r.root, b"etc/conf") == b"A\nb\nc\nd\nE\n"
    meta = lookup(store, r.root, b"etc/mode")[0]
    assert (meta.mode, meta.uid, meta.mtime_ns) == (0o600, 7, T0 + 5)  # field by field
    assert lookup(store, r.root, b"etc/conf")[0].size == 10
    assert blob(store, r.root, b"etc/new") == b"n\n"


def test_conflict_kinds(store):
    base = base_tree(store)

    def ours(ed, put, w):
        put(b"etc/conf", b"A1\nb\nc\nd\ne\n")
        put(b"etc/mode", b"x\n", mode=0o600)
        put(b"var/lib/dpkg/status", b"Package: a\nVersion: 2\n\nPackage: b\nVersion: 1\n")
        put(b"doc/readme", b"changed\n")
        ed.delete(b"bin")
        ed.set_file(b"etc/link", Meta(SYMLINK, 0o777, mtime_ns=T0), w.add(BLOB, b"x"))
        put(b"both", b"ours\n")
        ed.delete(b"var/lib/dpkg")  # not quite: re-add below as a file
        put(b"var/lib/dpkg", b"now a file\n")

    def theirs(ed, put, w):
        put(b"etc/conf", b"A2\nb\nc\nd\ne\n")
        put(b"etc/mode", b"x\n", mode=0o640)
        put(b"bin", b"other\0binary")
        ed.delete(b"doc")
        put(b"etc/link", b"a file\n")
        put(b"both", b"theirs\n")

    r = merge(store, base, ours, theirs)
    got = kinds(r)
    assert (b"etc/conf", CONTENT) in got
    assert (b"etc/mode", METADATA) in got
    assert (b"bin", DELETE_MODIFY) in got
    assert (b"doc", MODIFY_DELETE) in got
    assert (b"etc/link", TYPE) in got
    assert (b"both", ADD_ADD) in got
    text = blob(store, r.root, b"etc/conf")
    assert b"<<<<<<< new base\nA1\n=======\nA2\n>>>>>>> layer\n" in text
    assert blob(store, r.root, b"doc/readme") == b"changed\n"  # the changed side kept
    assert blob(store, r.root, b"bin") == b"other\0binary"  # only the layer has it


def test_package_db_conflicts_even_when_lines_merge(store):
    base = base_tree(store)
    r = merge(store, base,
              lambda ed, put, w: put(b"var/lib/dpkg/status",
                                     b"Package: a\nVersion: 2\n\nPackage: b\nVersion: 1\n"),
              lambda ed, put, w: put(b"var/lib/dpkg/status",
                                     b"Package: a\nVersion: 1\n\nPackage: b\nVersion: 2\n"))
    assert [(c.path, c.kind) for c in r.conflicts] == [(b"var/lib/dpkg/status", PACKAGE_DB)]
    assert "re-run the package step" in r.conflicts[0].line()


def test_addition_under_a_removed_directory(store):
    base = base_tree(store)
    r = merge(store, base, lambda ed, put, w: ed.delete(b"doc"),
              lambda ed, put, w: put(b"doc/new", b"n\n"))
    assert kinds(r) == {(b"doc/new", PARENT)}
    assert lookup(store, r.root, b"doc") is None


def test_swap_mode_lets_theirs_win_and_lists_conflicts(store):
    base = base_tree(store)
    r = merge(store, base, lambda ed, put, w: put(b"etc/conf", b"ours\n"),
              lambda ed, put, w: (put(b"etc/conf", b"theirs\n"), ed.delete(b"etc/mode")),
              force=True)
    assert kinds(r) == {(b"etc/conf", CONTENT)}
    assert blob(store, r.root, b"etc/conf") == b"theirs\n"
    assert lookup(store, r.root, b"etc/mode") is None


def test_identical_change_on_both_sides_is_not_a_conflict(store):
    base = base_tree(store)
    same = lambda ed, put, w: put(b"etc/conf", b"same\n")  # noqa: E731
    r = merge(store, base, same, same)
    assert r.conflicts == [] and blob(store, r.root, b"etc/conf") == b"same\n"
    assert lookup(store, r.root, b"etc/conf")[0].replace().size == 5
