"""The store: faithful import/checkout, git compatibility, dedup, diff, refs."""

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerctl.errors import Ambiguous, BadInput, InvalidName, Locked, NotFound
from layerctl.identity import parse_author
from layerctl.images import parse_name, resolve, set_tag
from layerctl.store.checkout import checkout
from layerctl.store.diff import diff
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.treecompare import compare, snapshot

ROOT = os.geteuid() == 0
MTIME = 1_700_000_000_123_456_789


def make_tree(top):
    """A small tree with every kind of entry and metadata layerctl must keep."""
    top = os.fsencode(top)
    j = lambda *p: os.path.join(top, *p)  # noqa: E731
    os.makedirs(j(b"etc"))
    os.makedirs(j(b"empty", b"nested-empty"))
    os.makedirs(j(b"secret"), mode=0o700)
    with open(j(b"etc", b"hostname"), "wb") as f:
        f.write(b"box\n")
    with open(j(b"bin-tool"), "wb") as f:
        f.write(b"\x7fELF\0binary")
    os.chmod(j(b"bin-tool"), 0o4755)
    os.chmod(j(b"secret"), 0o1700)
    os.symlink(b"etc/hostname", j(b"link"))
    os.symlink(b"/does/not/exist", j(b"dangling"))
    os.link(j(b"etc", b"hostname"), j(b"hardlink"))
    os.link(j(b"etc", b"hostname"), j(b"etc", b"another-link"))
    os.mkfifo(j(b"fifo"))
    for odd in (
        b".git",
        b".gitmodules",
        b"new\nline",
        b"\xff\xfebad-utf8",
        "中文".encode(),
        b".wh.not-a-whiteout",
        b"%percent",
        b"sp ace",
    ):
        with open(j(b"etc", odd), "wb") as f:
            f.write(odd * 3)
    os.setxattr(j(b"etc", b"hostname"), b"user.comment", b"\x00\x01binary\xff")
    if ROOT:
        os.mknod(j(b"null"), 0o666 | 0o020000, os.makedev(1, 3))
        os.chown(j(b"etc", b"hostname"), 1000, 1000)
        os.chown(j(b"link"), 7, 8, follow_symlinks=False)
        os.setxattr(
            j(b"bin-tool"),
            b"security.capability",
            bytes.fromhex("0100000200200000000000000000000000000000"),
        )
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(MTIME, MTIME), follow_symlinks=False)
    os.utime(top, ns=(MTIME + 1, MTIME + 1))


def test_import_checkout_is_faithful(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    store = Store(str(tmp_path / "store"))
    layer_id = import_dir(store, src, "odd:1")
    out = tmp_path / "out"
    checkout(store, read_layer(store, layer_id).root, str(out))
    a, b = snapshot(src), snapshot(out)
    assert len(a) > 15
    assert compare(a, b) == []


def test_store_is_a_valid_git_repository(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    store = Store(str(tmp_path / "store"))
    layer_id = import_dir(store, src, "odd")
    git = ["git", "--git-dir", str(tmp_path / "store")]
    fsck = subprocess.run(
        [*git, "fsck", "--strict", "--no-dangling"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "error" not in fsck.stderr
    shown = subprocess.run([*git, "show", f"{layer_id}:rootfs/etc/hostname"], capture_output=True)
    assert shown.stdout == b"box\n"
    record = subprocess.run(
        [*git, "show", f"{layer_id}:meta/etc/%"], capture_output=True, text=True
    ).stdout
    assert record.startswith(". d ")
    assert "hostname - 0644" in record


def test_reimport_of_same_tree_dedups(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    for i in range(50):
        (src / f"file{i}").write_bytes(os.urandom(20_000))
    store = Store(str(tmp_path / "store"))
    import_dir(store, src, "a")

    def size():
        return sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, fs in os.walk(tmp_path / "store" / "objects")
            for f in fs
        )

    before = size()
    import_dir(store, src, "b")
    assert size() - before < before * 0.01 + 2048
    assert (
        read_layer(store, resolve(store, "a")).root == read_layer(store, resolve(store, "b")).root
    )


def test_diff_reports_content_and_metadata(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    store = Store(str(tmp_path / "store"))
    base = import_dir(store, src, "img:1")

    def edit(editor, writer):
        meta, blob = editor.get(b"bin-tool")
        editor.set_file(b"bin-tool", meta.replace(mode=0o755), blob)
        put_file(editor, writer, b"etc/hostname", b"other\n", uid=1000)
        meta, blob = editor.get(b"link")
        editor.set_file(
            b"link", meta.replace(xattrs=((b"trusted.x", b"1"),)), blob
        )
        editor.delete(b"empty")
        editor.set_dir(b"new", meta.__class__("d", 0o755))
        put_file(editor, writer, b"new/file", b"x")

    top = commit_edit(store, "img:1", edit, "img:2")
    changes = {
        c.path: c for c in diff(store, read_layer(store, base).root, read_layer(store, top).root)
    }
    assert changes[b"bin-tool"].status == "C"
    assert f"mode {0o4755:04o}→0755" in changes[b"bin-tool"].details()
    assert "content" in changes[b"etc/hostname"].details()
    assert "xattr trusted.x added" in changes[b"link"].details()
    assert changes[b"empty"].status == "D"
    assert b"empty/nested-empty" not in changes  # a deleted directory is one change
    assert changes[b"new"].status == "A" and changes[b"new/file"].status == "A"
    assert resolve(store, "img:2~1") == base
    assert resolve(store, "img:2^") == base
    assert resolve(store, top[:8]) == top


def test_bad_references(tmp_path):
    store = Store(str(tmp_path / "store"))
    with pytest.raises(InvalidName):
        parse_name("Upper/Case")
    with pytest.raises(InvalidName):
        parse_name("a:b:c")
    with pytest.raises(NotFound):
        resolve(store, "nothing:here")
    with pytest.raises(NotFound):
        resolve(store, "deadbeef")
    assert parse_name("localhost:5000/ns/img:v1").repository == "localhost:5000/ns/img"
    assert parse_name("a").tag == "latest"


def test_names_that_share_prefixes_coexist(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    store = Store(str(tmp_path / "store"))
    one = import_dir(store, src, "a:b")
    (src / "g").write_text("y")
    two = import_dir(store, src, "a/b:c")
    three = import_dir(store, src, "localhost:5000/a/b:c")
    assert resolve(store, "a:b") == one
    assert resolve(store, "a/b:c") == two
    assert resolve(store, "localhost:5000/a/b:c") == three


def test_tag_compare_and_swap(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    store = Store(str(tmp_path / "store"))
    first = import_dir(store, src, "img")
    (src / "f").write_text("y")
    second = import_dir(store, src, "other")
    with pytest.raises(Locked):
        set_tag(store, parse_name("img"), second, expected=second)  # stale expectation
    assert resolve(store, "img") == first


def test_ambiguous_short_id(tmp_path):
    """Layers are committed on one tree with different messages until two ids share
    a 4-hex-digit prefix (about 320 tries by the birthday bound; quick commits)."""
    from layerctl.store.layers import write_layer

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    store = Store(str(tmp_path / "store"))
    base = read_layer(store, import_dir(store, src, "img"))
    seen = {}
    for i in range(5000):
        layer_id = write_layer(store, base.root, {}, None, "t <t@x>", f"try {i}", {})
        if layer_id[:4] in seen:
            break
        seen[layer_id[:4]] = layer_id
    else:
        raise AssertionError("no shared 4-digit prefix in 5000 layers")
    prefix = os.path.commonprefix([layer_id, seen[layer_id[:4]]])
    with pytest.raises(Ambiguous):
        resolve(store, prefix)
    assert resolve(store, layer_id[: len(prefix) + 1]) == layer_id


def test_author_forms():
    assert parse_author("Jane <jane@example.com>") == "Jane <jane@example.com>"
    assert parse_author("kuangshen") == "kuangshen <>"
    assert parse_author("狂神 <ks@example.com>") == "狂神 <ks@example.com>"
    with pytest.raises(BadInput):
        parse_author("a\nb")


names = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)


@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    entries=st.dictionaries(
        names,
        st.tuples(
            st.binary(max_size=64), st.integers(0, 0o7777), st.integers(0, 60000), st.booleans()
        ),
        min_size=1,
        max_size=12,
    )
)
def test_generated_trees_round_trip(tmp_path_factory, entries):
    tmp = tmp_path_factory.mktemp("gen")
    src = os.path.join(os.fsencode(tmp), b"src")
    os.mkdir(src)
    for name, (data, mode, owner, as_dir) in entries.items():
        path = os.path.join(src, name)
        if as_dir:
            os.mkdir(path)
            with open(os.path.join(path, b"inner"), "wb") as f:
                f.write(data)
        else:
            with open(path, "wb") as f:
                f.write(data)
        if ROOT:
            os.chown(path, owner, owner)
        os.chmod(path, mode | (0o700 if as_dir else 0o600))
        os.setxattr(path, b"user.n", name) if not as_dir else None
    store = Store(os.path.join(os.fsdecode(tmp), "store"))
    layer_id = import_dir(store, os.fsdecode(src), "gen")
    out = os.path.join(os.fsencode(tmp), b"out")
    checkout(store, read_layer(store, layer_id).root, out)
    assert compare(snapshot(src), snapshot(out)) == []
    shutil.rmtree(tmp)


@pytest.mark.slow
def test_debian_rootfs_fidelity(debian_rootfs, tmp_path):
    store = Store(str(tmp_path / "store"))
    layer_id = import_dir(store, debian_rootfs, "debian:12")
    out = tmp_path / "out"
    checkout(store, read_layer(store, layer_id).root, str(out))
    a, b = snapshot(debian_rootfs), snapshot(out)
    assert len(a) > 5000
    assert compare(a, b) == []
    assert {"file", "dir", "symlink", "char"} <= {e.type for e in a.values()}
    fsck = subprocess.run(
        ["git", "--git-dir", str(tmp_path / "store"), "fsck", "--no-dangling"],
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0, fsck.stderr
    shown = subprocess.run(
        [
            "git",
            "--git-dir",
            str(tmp_path / "store"),
            "show",
            f"{layer_id}:rootfs/etc/debian_version",
        ],
        capture_output=True,
        text=True,
    )
    assert shown.stdout == (debian_rootfs / "etc" / "debian_version").read_text()


def test_import_diffid_matches_the_changeset_tar(tmp_path):
    """Import hashes its tar in the same pass; it must equal the tar `save` writes."""
    from layerctl.changeset.write import write_changeset

    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    (src / "big").write_bytes(os.urandom(200_000))  # through the worker threads
    store = Store(str(tmp_path / "store"))
    layer = read_layer(store, import_dir(store, src, "img"))
    assert layer.diff_id == write_changeset(store, None, layer.root)[0]


def test_diff_order_and_kinds_through_deep_trees(tmp_path):
    """store.diff walks a stack of directories (not a generator per level): the changes
    still come parents first, names sorted per directory, a replaced directory flagged
    opaque, a directory that became a file followed by nothing of its old entries, a
    file that became a directory followed by its new entries."""
    from layerctl.store.fstree import walk_key
    from layerctl.store.meta import DIR, Meta

    src = tmp_path / "src"
    for d in ("a/b/c/d/e", "a/b/x", "m/n", "r/old", "t/u"):
        (src / d).mkdir(parents=True)
    for f in ("a/b/c/d/e/deep", "a/b/c/d/e/deep2", "a/b/c/sib", "a/b/x/y", "a/z", "m/n/f",
              "r/old/f", "t/u/f", "f2d", "zz"):
        (src / f).write_bytes(f.encode())
    store = Store(str(tmp_path / "store"))
    base = import_dir(store, src, "deep:1")
    d = Meta(DIR, 0o755, 0, 0, 1_700_000_000_000_000_000, 0)

    def edit(ed, w):
        put_file(ed, w, b"a/b/c/d/e/deep", b"changed")  # deep content change
        ed.set_dir(b"a/b/c", d.replace(mode=0o700))  # a directory's own change on the way
        put_file(ed, w, b"a/b/c/d/e/new", b"new")  # deep add
        ed.delete(b"a/b/x")  # a directory whiteout: one change
        put_file(ed, w, b"a/aa", b"between a/ and its sorted siblings")
        ed.delete(b"r/old")  # r/ replaced: old entries all gone, a new one there
        put_file(ed, w, b"r/new", b"fresh")
        ed.delete(b"t")  # a directory became a file
        put_file(ed, w, b"t", b"now a file")
        ed.delete(b"f2d")  # a file became a directory with entries
        ed.set_dir(b"f2d", d)
        put_file(ed, w, b"f2d/in", b"inside")
        meta, blob = ed.get(b"zz")
        ed.set_file(b"zz", meta.replace(uid=7), blob)

    top = commit_edit(store, "deep:1", edit, "deep:2")
    got = [(c.path, c.status, c.opaque) for c in diff(
        store, read_layer(store, base).root, read_layer(store, top).root)]
    assert got == [  # unchanged directories on the way down are no change
        (b"a/aa", "A", False), (b"a/b/c", "C", False),
        (b"a/b/c/d/e/deep", "C", False), (b"a/b/c/d/e/new", "A", False),
        (b"a/b/x", "D", False),
        (b"f2d", "C", False), (b"f2d/in", "A", False),
        (b"r", "C", True), (b"r/new", "A", False), (b"r/old", "D", False),
        (b"t", "C", False),
        (b"zz", "C", False),
    ]
    assert [p for p, _, _ in got] == sorted((p for p, _, _ in got), key=walk_key)


def test_a_new_store_is_what_git_init_bare_makes(tmp_path):
    """Made without dulwich: the same entries as `git init --bare` (hooks' samples and
    description text aside), git's own config reading of it, and dulwich opens it."""
    from dulwich.repo import Repo

    Store(str(tmp_path / "store")).close()
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "git")], check=True)
    ours = {p.relative_to(tmp_path / "store").as_posix() for p in (tmp_path / "store").rglob("*")}
    theirs = {p.relative_to(tmp_path / "git").as_posix() for p in (tmp_path / "git").rglob("*")
              if "hooks/" not in p.as_posix()}
    assert theirs <= ours
    assert ours - theirs == {"cache", "containers", "runtime"}
    config = subprocess.run(["git", "--git-dir", str(tmp_path / "store"), "config", "--list",
                             "--local"], check=True, capture_output=True, text=True).stdout
    assert {"core.bare=true", "layerctl.version=1", "gc.auto=0"} <= set(config.split())
    assert (tmp_path / "store" / "HEAD").read_bytes() == b"ref: refs/heads/master\n"
    repo = Repo(str(tmp_path / "store"))
    assert repo.bare
    repo.close()
    Store(str(tmp_path / "store")).close()  # and it opens as a store again
