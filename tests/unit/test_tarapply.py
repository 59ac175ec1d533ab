"""Reading layer tars (layerctl.changeset.apply) and decompression (layerctl.compress.detect).

Round trips: a layer made with import_directory, written with write_changeset
and applied back onto its parent, gives exactly the same trees (same ids).
The changeset never carries the root directory's own metadata (diff() starts
below the root), so test trees keep the root at 0755 root:root mtime 0, which
is what a TreeEditor without a base starts from.
"""

from __future__ import annotations

import bz2
import copy
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerctl.changeset.apply import Limits, apply_layer_tar
from layerctl.changeset.write import write_changeset
from layerctl.compress.detect import CorruptStream, detect_compression, open_decompressed
from layerctl.errors import BadInput
from layerctl.images import parse_name
from layerctl.importer import import_directory, import_tar
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef, walk
from layerctl.store.layers import read_layer
from layerctl.store.meta import Meta
from layerctl.store.objects import BIG_FILE
from layerctl.store.repo import Store
from tests.tarhelpers import tar_bytes, ti

AUTHOR = "Test <test@example.com>"


# -- helpers ---------------------------------------------------------------------


def import_dir(store: Store, path: Path | str, name: str = "t:1") -> DirRef:
    return read_layer(store, import_directory(store, str(path), parse_name(name), AUTHOR)).root


def layer_tar(store: Store, parent: DirRef | None, root: DirRef) -> bytes:
    out = io.BytesIO()
    write_changeset(store, parent, root, out)
    return out.getvalue()


def apply(store: Store, parent: DirRef | None, data: bytes, **kw) -> DirRef:
    with store.pack_writer() as writer:
        editor = TreeEditor(store, parent)
        apply_layer_tar(editor, writer, io.BytesIO(data), **kw)
        root = editor.write(writer)
        writer.finish()
    store.landed()
    return root


def entries(store: Store, root: DirRef) -> dict[bytes, tuple]:
    """path -> (meta, blob id or None for directories), for readable failures."""
    return {
        path: (meta, None if isinstance(obj, DirRef) else obj)
        for path, meta, obj in walk(store, root)
    }


def assert_same(store: Store, got: DirRef, want: DirRef) -> None:
    if got != want:
        a, b = entries(store, got), entries(store, want)
        diffs = {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        pytest.fail(f"trees differ at {len(diffs)} paths: {diffs}")


def normalise_root(path: Path) -> None:
    os.chown(path, 0, 0)
    os.chmod(path, 0o755)
    os.utime(path, ns=(0, 0))


def meta_of(store: Store, root: DirRef, path: bytes) -> Meta | None:
    found = entries(store, root).get(path)
    return found[0] if found else None


# -- decompression ---------------------------------------------------------------


PAYLOAD = os.urandom(50_000) + b"\0" * 300_000 + b"layer" * 1000


class Pipe:
    """A read()-only, non-seekable stream that returns short reads."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.pos, self.step = data, 0, step

    def read(self, n: int = -1) -> bytes:
        n = self.step if n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


COMPRESSORS = {
    "gzip": gzip.compress,
    "zstd": lambda d: zstandard.ZstdCompressor(write_checksum=True).compress(d),
    "xz": lzma.compress,
    "bzip2": bz2.compress,
}


@pytest.mark.parametrize("kind", ["none", *COMPRESSORS])
def test_open_decompressed_detects_and_streams(kind: str) -> None:
    data = PAYLOAD if kind == "none" else COMPRESSORS[kind](PAYLOAD)
    assert detect_compression(data[:6]) == kind
    stream = open_decompressed(Pipe(data, step=7777))
    assert stream.compression == kind
    got = b"".join(iter(lambda: stream.read(4096), b""))
    assert got == PAYLOAD


def test_open_decompressed_short_reads_while_sniffing() -> None:
    stream = open_decompressed(Pipe(gzip.compress(b"hello"), step=1))
    assert stream.read() == b"hello"


def test_multi_member_gzip_and_zstd_frames_and_gzip_padding() -> None:
    gz = gzip.compress(b"one ") + gzip.compress(b"two") + b"\0" * 100
    assert open_decompressed(io.BytesIO(gz)).read() == b"one two"
    c = zstandard.ZstdCompressor()
    assert open_decompressed(io.BytesIO(c.compress(b"one ") + c.compress(b"two"))).read() == \
        b"one two"


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_truncated_compressed_data_is_bad_input(kind: str) -> None:
    data = COMPRESSORS[kind](PAYLOAD)
    stream = open_decompressed(io.BytesIO(data[: len(data) * 2 // 3]))
    with pytest.raises(CorruptStream, match=f"truncated {kind} data|corrupt {kind} data"):
        stream.read()


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_corrupt_compressed_data_is_bad_input(kind: str) -> None:
    data = bytearray(COMPRESSORS[kind](b"".join(b"line %d\n" % i for i in range(20000))))
    for i in range(20, len(data) - 20, 97):
        data[i] ^= 0x55
    with pytest.raises(BadInput, match=f"(corrupt|truncated) {kind} data"):
        open_decompressed(io.BytesIO(bytes(data))).read()


def test_gzip_crc_mismatch_and_trailing_garbage() -> None:
    data = bytearray(gzip.compress(b"x" * 1000))
    data[-8] ^= 1  # the CRC32 in the trailer
    with pytest.raises(CorruptStream, match="corrupt gzip data"):
        open_decompressed(io.BytesIO(bytes(data))).read()
    with pytest.raises(CorruptStream, match="corrupt gzip data"):
        open_decompressed(io.BytesIO(gzip.compress(b"x") + b"garbage!")).read()


def test_empty_compressed_stream() -> None:
    assert open_decompressed(io.BytesIO(b"")).read() == b""
    with pytest.raises(CorruptStream, match="truncated gzip"):
        open_decompressed(io.BytesIO(b"\x1f\x8b")).read()


# -- hypothesis trees --------------------------------------------------------------


NAMES = [b"a", b"b", b"Zz", b".git", b"x\ny", b"\xff\xfe", "café".encode(), b"sp ace",
         b"%2e", b"-", b"...", b"a.b", b"back\\slash", b"gitmodules", b"n" * 120]


@dataclass
class M:
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: dict = field(default_factory=dict)


@dataclass
class F:
    data: bytes
    m: M


@dataclass
class D:
    m: M
    kids: dict


@dataclass
class SL:  # symlink
    target: bytes
    m: M


@dataclass
class SP:  # fifo or device
    kind: str
    m: M


@dataclass
class HL:  # hardlink to the target-th regular file of the tree (in walk order)
    target: int


owners = st.sampled_from([0, 1, 1000, 65534, 3_000_000])
mtimes = st.one_of(
    st.just(0),
    st.integers(-(2**31) * 10**9, 2**32 * 10**9),
    st.integers(0, 2**31).map(lambda s: s * 10**9),
)
xattr_st = st.dictionaries(
    st.sampled_from([b"user.a", b"user.mime_type", b"user.\xffbin"]),
    st.binary(max_size=20), max_size=2,
)


@st.composite
def metas(draw, mode_max: int = 0o7777, xattrs: bool = True) -> M:
    return M(draw(st.integers(0, mode_max)), draw(owners), draw(owners), draw(mtimes),
             draw(xattr_st) if xattrs else {})


@st.composite
def nodes(draw, depth: int = 0):
    choices = ["file", "file", "symlink", "fifo", "chr", "hardlink"]
    if depth < 3:
        choices += ["dir", "dir"]
    kind = draw(st.sampled_from(choices))
    if kind == "file":
        return F(draw(st.binary(max_size=300)), draw(metas()))
    if kind == "dir":
        return D(draw(metas()), draw(st.dictionaries(st.sampled_from(NAMES), nodes(depth + 1),
                                                     max_size=4)))
    if kind == "symlink":
        return SL(draw(st.sampled_from([b"a", b"../b", b"/etc/passwd", b"\xff", b"x" * 200])),
                  M(0o777, draw(owners), draw(owners), draw(mtimes)))
    if kind == "hardlink":
        return HL(draw(st.integers(0, 50)))
    return SP(kind, draw(metas(xattrs=False)))


trees = st.dictionaries(st.sampled_from(NAMES + [b"d", b"Zz"]), nodes(), max_size=6)


def flat(tree: dict, prefix: bytes = b"") -> dict[bytes, object]:
    out = {}
    for name, node in tree.items():
        path = prefix + b"/" + name if prefix else name
        out[path] = node
        if isinstance(node, D):
            out.update(flat(node.kids, path))
    return out


def materialise(tree: dict, top: Path) -> None:
    """Create `tree` under `top` with exact metadata (root normalised)."""
    top_b = os.fsencode(top)
    os.mkdir(top_b)
    items = flat(tree)
    files = sorted((p for p, n in items.items() if isinstance(n, F)), key=lambda p: p.split(b"/"))
    for path, node in items.items():  # parents first
        full = top_b + b"/" + path
        if isinstance(node, D):
            os.mkdir(full)
        elif isinstance(node, F) or (isinstance(node, HL) and not files):
            with open(full, "wb") as f:
                f.write(node.data if isinstance(node, F) else b"lonely")
        elif isinstance(node, SL):
            os.symlink(node.target, full)
        elif isinstance(node, SP):
            fmt = {"fifo": stat.S_IFIFO, "chr": stat.S_IFCHR}[node.kind]
            os.mknod(full, fmt | 0o600, os.makedev(1, 3) if node.kind == "chr" else 0)
    for path, node in items.items():
        if isinstance(node, HL) and files:
            os.link(top_b + b"/" + files[node.target % len(files)], top_b + b"/" + path)
    for path in sorted(items, key=lambda p: -p.count(b"/")):  # children before parents
        node = items[path]
        m = getattr(node, "m", None)
        full = top_b + b"/" + path
        if m is None:
            if isinstance(node, HL) and not files:
                os.utime(full, ns=(0, 0))
            continue
        os.chown(full, m.uid, m.gid, follow_symlinks=False)
        if not isinstance(node, SL):
            os.chmod(full, m.mode)
            for name, value in m.xattrs.items():
                os.setxattr(full, name, value)
        os.utime(full, ns=(m.mtime_ns, m.mtime_ns), follow_symlinks=False)
    normalise_root(top)


def mutate(tree: dict, ops: list) -> dict:
    """A second snapshot: deletions, edits, metadata changes, replacements, opaque dirs."""
    tree = copy.deepcopy(tree)
    for op, pick, arg in ops:
        items = flat(tree)
        if not items:
            tree[b"new"] = arg if isinstance(arg, (F, D)) else F(b"new", M(0o644, 0, 0, 5))
            continue
        path = sorted(items)[pick % len(items)]
        parent_path, _, name = path.rpartition(b"/")
        parent = tree if not parent_path else items[parent_path].kids
        node = parent[name]
        m = getattr(node, "m", None)
        if op == "delete":
            del parent[name]
        elif op == "content" and isinstance(node, F):
            node.data = arg.data if isinstance(arg, F) else b"changed"
        elif op == "chmod" and m is not None and not isinstance(node, SL):
            m.mode = (m.mode ^ 0o4011) & 0o7777
        elif op == "chown" and m is not None:
            m.uid, m.gid = m.gid + 1, m.uid
        elif op == "touch" and m is not None:
            m.mtime_ns += 1
        elif op == "xattr" and m is not None and isinstance(node, (F, D)):
            m.xattrs = {**m.xattrs, b"user.changed": b"\x00\xff"}
        elif op == "replace":
            parent[name] = (copy.deepcopy(arg) if not isinstance(node, type(arg))
                            else F(b"r", M(0o600, 0, 0, 1)))
        elif op == "opaque" and isinstance(node, D):
            new_kids = copy.deepcopy(arg.kids) if isinstance(arg, D) else {}
            node.kids = {b"fresh-" + n: k for n, k in new_kids.items()}
            node.kids.setdefault(b"fresh", F(b"fresh", M(0o644, 0, 0, 7)))
        elif op == "add" and isinstance(node, D):
            node.kids[b"added"] = copy.deepcopy(arg)
        elif op == "link" and isinstance(node, D):
            node.kids[b"linked"] = HL(pick)
    return tree


ops_st = st.lists(
    st.tuples(
        st.sampled_from(["delete", "content", "chmod", "chown", "touch", "xattr", "replace",
                         "opaque", "add", "link"]),
        st.integers(0, 1000),
        nodes(depth=2),
    ),
    max_size=6,
)
HYPO = settings(max_examples=int(os.environ.get("TARAPPLY_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@HYPO
@given(tree=trees)
def test_round_trip_base_layer(tree: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="tarapply-") as tmp:
        src = Path(tmp) / "src"
        materialise(tree, src)
        store = Store(os.path.join(tmp, "store"))
        try:
            root = import_dir(store, src)
            data = layer_tar(store, None, root)
            assert_same(store, apply(store, None, data), root)
            # and as a root filesystem tar
            assert_same(store, apply(store, None, data, whiteouts=False), root)
        finally:
            store.close()


@HYPO
@given(tree=trees, ops=ops_st)
def test_round_trip_second_layer(tree: dict, ops: list) -> None:
    tree2 = mutate(tree, ops)
    with tempfile.TemporaryDirectory(prefix="tarapply-") as tmp:
        materialise(tree, Path(tmp) / "one")
        materialise(tree2, Path(tmp) / "two")
        store = Store(os.path.join(tmp, "store"))
        try:
            one = import_dir(store, Path(tmp) / "one", "t:1")
            two = import_dir(store, Path(tmp) / "two", "t:2")
            assert_same(store, apply(store, one, layer_tar(store, one, two)), two)
        finally:
            store.close()


# -- explicit round trips -------------------------------------------------------------


def build_first(top: Path) -> None:
    top.mkdir()
    (top / "etc").mkdir()
    (top / "etc/passwd").write_bytes(b"root:x:0:0\n")
    (top / "etc/hosts").write_bytes(b"127.0.0.1 localhost\n")
    (top / "etc/motd").write_bytes(b"hello\n")
    (top / "opaque").mkdir()
    (top / "opaque/old1").write_bytes(b"1")
    (top / "opaque/sub").mkdir()
    (top / "opaque/sub/old2").write_bytes(b"2")
    (top / "bin").mkdir()
    (top / "bin/perl").write_bytes(b"#!perl\n" * 100)
    os.link(top / "bin/perl", top / "bin/perl5")
    os.link(top / "bin/perl", top / "etc/perl-link")
    (top / "bin/su").write_bytes(b"su")
    os.chmod(top / "bin/su", 0o4755)
    (top / "becomes-dir").write_bytes(b"file")
    (top / "becomes-file").mkdir()
    (top / "becomes-file/child").write_bytes(b"c")
    (top / "empty").mkdir()
    os.symlink("etc/passwd", top / "link")
    os.mkfifo(top / "fifo")
    os.mknod(top / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(top / "etc/hosts", b"user.keep", b"\x00\x01\xff")
    (top / os.fsdecode(b"\xff-bytes")).write_bytes(b"odd")
    (top / "new\nline").write_bytes(b"nl")
    (top / ".git").mkdir()
    (top / ".git/HEAD").write_bytes(b"ref: x\n")
    for p in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
        os.utime(p, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
                 follow_symlinks=False)
    normalise_root(top)


def build_second(top: Path) -> None:
    """Additions, modifications, deletions, an opaque directory, metadata-only changes."""
    (top / "etc/motd").unlink()  # deletion
    (top / "etc/passwd").write_bytes(b"root:x:0:0\nweb:x:33:33\n")  # modification
    os.chmod(top / "etc/hosts", 0o600)  # metadata only: chmod
    os.chown(top / "bin/su", 0, 5)  # chown (drops setuid)
    os.chmod(top / "bin/su", 0o4750)
    os.utime(top / "link", ns=(5, 5), follow_symlinks=False)  # touch a symlink
    os.setxattr(top / "etc/hosts", b"user.added", b"v")  # xattr
    shutil.rmtree(top / "opaque")  # opaque: every old child gone, new ones
    (top / "opaque").mkdir()
    (top / "opaque/new").write_bytes(b"n")
    (top / "becomes-dir").unlink()
    (top / "becomes-dir").mkdir()
    (top / "becomes-dir/inside").write_bytes(b"i")
    shutil.rmtree(top / "becomes-file")
    (top / "becomes-file").write_bytes(b"now a file")
    os.link(top / "bin/perl", top / "bin/a-perl")  # new first member of a lower group
    (top / "srv/www").mkdir(parents=True)  # additions
    (top / "srv/www/index.html").write_bytes(b"<html>")
    (top / os.fsdecode(b"\xfe.wh-ish")).write_bytes(b"x")
    normalise_root(top)


def test_round_trip_explicit_layers(store: Store, tmp_path: Path) -> None:
    build_first(tmp_path / "one")
    one = import_dir(store, tmp_path / "one", "t:1")
    assert_same(store, apply(store, None, layer_tar(store, None, one)), one)
    subprocess.run(["cp", "-a", tmp_path / "one", tmp_path / "two"], check=True)
    build_second(tmp_path / "two")
    two = import_dir(store, tmp_path / "two", "t:2")
    data = layer_tar(store, one, two)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(data))]
    assert "opaque/.wh..wh..opq" in names and "etc/.wh.motd" in names
    assert_same(store, apply(store, one, data), two)
    group = entries(store, two)
    assert group[b"bin/a-perl"][0].link is None
    assert group[b"bin/perl"][0].link == b"bin/a-perl"
    assert group[b"etc/perl-link"][0].link == b"bin/a-perl"


def test_gnu_tar_hardlinks_canonical_like_dirimporter(store: Store, tmp_path: Path) -> None:
    """GNU tar stores the first name it meets; the store keys groups by walk order."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "z").write_bytes(b"shared")
    os.link(src / "z", src / "sub/y")
    os.link(src / "z", src / "a")
    (src / "solo").write_bytes(b"s")
    normalise_root(src)
    tar = tmp_path / "x.tar"
    subprocess.run(["tar", "--format=posix", "-cf", tar, "-C", src, "./z", "./sub", "./a",
                    "./solo"], check=True)
    members = {m.name: m for m in tarfile.open(tar)}
    assert members["./z"].isreg() and members["./a"].islnk()
    root = read_layer(store, import_tar(store, tar, "t:tar", AUTHOR)).root
    assert_same(store, root, import_dir(store, src))
    got = entries(store, root)
    assert got[b"a"][0].link is None
    assert got[b"sub/y"][0].link == b"a" and got[b"z"][0].link == b"a"


def test_round_trip_negative_mtime_with_fraction(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "old").write_bytes(b"x")
    os.utime(src / "old", ns=(-1_500_000_000, -1_500_000_000))
    normalise_root(src)
    root = import_dir(store, src)
    assert_same(store, apply(store, None, layer_tar(store, None, root)), root)


# -- whiteouts, replacements, parents -------------------------------------------------


@pytest.fixture
def lower(store: Store, tmp_path: Path) -> DirRef:
    src = tmp_path / "lower"
    (src / "dir/sub").mkdir(parents=True)
    (src / "dir/a").write_bytes(b"a")
    (src / "dir/sub/b").write_bytes(b"b")
    (src / "file").write_bytes(b"f")
    (src / "group").mkdir()
    (src / "group/first").write_bytes(b"g")
    os.link(src / "group/first", src / "group/second")
    os.link(src / "group/first", src / "group/third")
    os.symlink("/etc", src / "evil")
    normalise_root(src)
    return import_dir(store, src, "lower:1")


def paths(store: Store, root: DirRef) -> set[bytes]:
    return set(entries(store, root)) - {b""}


def test_whiteout_removes_lower_entry(store: Store, lower: DirRef) -> None:
    root = apply(store, lower, tar_bytes((ti("dir/.wh.a"), b""), (ti(".wh.file"), b"")))
    assert b"dir/a" not in paths(store, root) and b"file" not in paths(store, root)
    assert b"dir/sub/b" in paths(store, root)


@pytest.mark.parametrize("order", ["whiteout-first", "whiteout-last"])
def test_whiteout_never_deletes_what_the_same_tar_adds(store: Store, lower: DirRef,
                                                       order: str) -> None:
    whiteouts = [(ti("dir/.wh.sub"), b""), (ti(".wh.file"), b"")]
    adds = [(ti("dir/sub/new"), b"new"), (ti("file"), b"replaced")]
    members = whiteouts + adds if order == "whiteout-first" else adds + whiteouts
    root = apply(store, lower, tar_bytes(*members))
    got = entries(store, root)
    assert b"dir/sub/new" in got and b"dir/sub/b" not in got
    assert got[b"dir/sub"][0] == Meta("d", 0o755)  # the lower dir is gone: a new parent
    assert store.read_blob(got[b"file"][1]) == b"replaced"


@pytest.mark.parametrize("order", ["opaque-first", "opaque-last"])
def test_opaque_keeps_this_tars_entries(store: Store, lower: DirRef, order: str) -> None:
    opq = (ti("dir/.wh..wh..opq"), b"")
    adds = [(ti("dir/", tarfile.DIRTYPE, 0o700), None), (ti("dir/sub/", tarfile.DIRTYPE), None),
            (ti("dir/sub/x"), b"x"), (ti("dir/new"), b"n")]
    members = [adds[0], opq, *adds[1:]] if order == "opaque-first" else [*adds, opq]
    root = apply(store, lower, tar_bytes(*members))
    got = paths(store, root)
    assert {p for p in got if p.startswith(b"dir/")} == {b"dir/sub", b"dir/sub/x", b"dir/new"}
    assert meta_of(store, root, b"dir").mode == 0o700


def test_opaque_at_root_and_aufs_metadata_ignored(store: Store, lower: DirRef) -> None:
    data = tar_bytes((ti(".wh..wh..opq"), b""), (ti("only"), b"o"),
                     (ti(".wh..wh.plnk/", tarfile.DIRTYPE), None), (ti(".wh..wh.plnk/1"), b""),
                     (ti(".wh..wh.aufs"), b""))
    assert paths(store, apply(store, lower, data)) == {b"only"}


def test_whiteouts_in_a_rootfs_tar_are_errors(store: Store) -> None:
    with pytest.raises(BadInput, match=r"'x/\.wh\.y'.*root filesystem"):
        apply(store, None, tar_bytes((ti("x/.wh.y"), b"")), whiteouts=False)


def test_real_file_named_wh_cannot_travel_in_a_layer_tar(store: Store, tmp_path: Path) -> None:
    """The format has no escape for a real `.wh.NAME`: the writer emits it as is, and
    a reader takes it for a whiteout (layer) or refuses it (root filesystem)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / ".wh.x").write_bytes(b"i am a file")
    (src / "keep").write_bytes(b"k")
    normalise_root(src)
    root = import_dir(store, src)
    data = layer_tar(store, None, root)
    assert paths(store, apply(store, None, data)) == {b"keep"}
    with pytest.raises(BadInput, match=r"'\.wh\.x'"):
        apply(store, None, data, whiteouts=False)


def test_missing_parents_are_created_like_tar(store: Store) -> None:
    root = apply(store, None, tar_bytes((ti("a/b/c", mode=0o600, uid=5), b"c")))
    assert meta_of(store, root, b"a") == Meta("d", 0o755)
    assert meta_of(store, root, b"a/b") == Meta("d", 0o755)
    assert meta_of(store, root, b"a/b/c").uid == 5


def test_existing_lower_parent_keeps_its_metadata(store: Store, lower: DirRef) -> None:
    root = apply(store, lower, tar_bytes((ti("dir/sub/new"), b"n")))
    assert meta_of(store, root, b"dir") == meta_of(store, lower, b"dir")
    assert {b"dir/sub/b", b"dir/sub/new"} <= paths(store, root)


def test_dir_entry_keeps_children_and_sets_metadata(store: Store, lower: DirRef) -> None:
    root = apply(store, lower, tar_bytes((ti("dir/", tarfile.DIRTYPE, 0o1777, uid=7), None)))
    assert meta_of(store, root, b"dir").mode == 0o1777
    assert b"dir/sub/b" in paths(store, root)


def test_file_replaced_by_dir_and_back(store: Store, lower: DirRef) -> None:
    root = apply(store, lower, tar_bytes(
        (ti("file/", tarfile.DIRTYPE), None), (ti("file/in"), b"i"),  # file -> dir
        (ti("dir"), b"now a file"),  # dir (with lower children) -> file
    ))
    got = entries(store, root)
    assert got[b"file"][0].kind == "d" and b"file/in" in got
    assert got[b"dir"][0].kind == "-" and not any(p.startswith(b"dir/") for p in got)


def test_duplicates_later_wins(store: Store) -> None:
    root = apply(store, None, tar_bytes(
        (ti("x"), b"first"), (ti("x"), b"second"),
        (ti("d/", tarfile.DIRTYPE), None), (ti("d/in"), b"i"), (ti("d"), b"file wins"),
        (ti("./x", mode=0o600), b"third"),
    ))
    got = entries(store, root)
    assert store.read_blob(got[b"x"][1]) == b"third" and got[b"x"][0].mode == 0o600
    assert store.read_blob(got[b"d"][1]) == b"file wins" and b"d/in" not in got


def test_missing_end_of_archive_marker_is_accepted(store: Store) -> None:
    data = tar_bytes((ti("a"), b"a" * 600), fmt=tarfile.USTAR_FORMAT)[:512 + 1024]
    assert paths(store, apply(store, None, data)) == {b"a"}


def test_root_entry_sets_root_metadata(store: Store) -> None:
    root = apply(store, None, tar_bytes((ti("./", tarfile.DIRTYPE, 0o700, 99, uid=3), None)))
    assert meta_of(store, root, b"") == Meta("d", 0o700, 3, 0, 99_000_000_000)


# -- hardlinks against the lower tree ----------------------------------------------------


def test_hardlink_to_lower_group_member_joins_the_group(store: Store, lower: DirRef) -> None:
    root = apply(store, lower, tar_bytes((ti("a-new", tarfile.LNKTYPE, linkname="group/third"),
                                          None)))
    got = entries(store, root)
    assert got[b"a-new"][0].link is None
    for p in (b"group/first", b"group/second", b"group/third"):
        assert got[p][0].link == b"a-new" and got[p][1] == got[b"a-new"][1]


def test_replacing_first_member_regroups_the_rest(store: Store, lower: DirRef) -> None:
    root = apply(store, lower, tar_bytes((ti("group/first"), b"new inode")))
    got = entries(store, root)
    assert got[b"group/first"][0].link is None
    assert got[b"group/second"][0].link is None
    assert got[b"group/third"][0].link == b"group/second"


def test_whiteout_of_group_members(store: Store, lower: DirRef) -> None:
    root = apply(store, lower, tar_bytes((ti("group/.wh.first"), b""),
                                         (ti("group/.wh.third"), b"")))
    got = entries(store, root)
    assert got[b"group/second"][0].link is None and b"group/third" not in got
    root = apply(store, lower, tar_bytes((ti(".wh.group"), b"")))
    assert not any(p.startswith(b"group") for p in paths(store, root))


def test_hardlink_chain_inside_tar_and_break(store: Store) -> None:
    root = apply(store, None, tar_bytes(
        (ti("m", mode=0o755, mtime=5), b"content"),
        (ti("k", tarfile.LNKTYPE, mode=0o600, linkname="m"), None),  # header meta ignored
        (ti("z", tarfile.LNKTYPE, linkname="k"), None),
        (ti("z2", tarfile.LNKTYPE, linkname="z"), None),
        (ti("z2"), b"replaced"),  # a new inode; leaves the group
        (ti("m", tarfile.LNKTYPE, linkname="m"), None),  # GNU tar's self link: no-op
    ))
    got = entries(store, root)
    assert got[b"k"][0] == Meta("-", 0o755, 0, 0, 5_000_000_000, 7)
    assert got[b"m"][0].link == b"k" and got[b"z"][0].link == b"k"
    assert got[b"z2"][0].link is None and store.read_blob(got[b"z2"][1]) == b"replaced"


# -- metadata and names ------------------------------------------------------------------


def test_metadata_exact(store: Store) -> None:
    root = apply(store, None, tar_bytes(
        (ti("f", mode=0o104755, uid=70000, gid=3_000_000,
            pax={"mtime": "1700000000.000000001", "SCHILY.xattr.user.bin": "\udcff\x00v",
                 "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                 "LIBARCHIVE.xattr.user.b64%20x": "aGk"}), b"x"),
        (ti("neg", pax={"mtime": "-1.5"}), b""),
        (ti("dev", tarfile.CHRTYPE, 0o620), None),
        (ti("fifo", tarfile.FIFOTYPE, 0o600), None),
        (ti("blk", tarfile.BLKTYPE, pax={"SCHILY.devmajor": "259", "SCHILY.devminor": "70000"}),
         None),
    ))
    got = entries(store, root)
    assert got[b"f"][0] == Meta(
        "-", 0o4755, 70000, 3_000_000, 1_700_000_000_000_000_001, 1,
        xattrs=((b"security.capability", b"\x01\x00\x00\x02"), (b"user.b64 x", b"hi"),
                (b"user.bin", b"\xff\x00v")),
    )
    assert got[b"neg"][0].mtime_ns == -1_500_000_000
    assert got[b"blk"][0].rdev == (259, 70000) and got[b"fifo"][0].kind == "p"


def test_device_numbers_from_ustar(store: Store) -> None:
    info = ti("null", tarfile.CHRTYPE, 0o666)
    info.devmajor, info.devminor = 1, 3
    root = apply(store, None, tar_bytes((info, None), fmt=tarfile.GNU_FORMAT))
    assert meta_of(store, root, b"null").rdev == (1, 3)


def test_non_utf8_and_odd_names_round_trip_as_bytes(store: Store) -> None:
    odd = [b"\xff\xfe", b"caf\xe9", b"new\nline", b".git", b"a\\b", b"\xed\xa0\x80",
           b"long-\xff" * 40]
    members = [(ti(n.decode("utf-8", "surrogateescape")), n) for n in odd]
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        root = apply(store, None, tar_bytes(*members, fmt=fmt))
        got = entries(store, root)
        for n in odd:
            assert store.read_blob(got[n][1]) == n
    link = ti("l", tarfile.SYMTYPE, linkname=b"\xff/target".decode("utf-8", "surrogateescape"))
    root = apply(store, None, tar_bytes((link, None)))
    assert store.read_blob(entries(store, root)[b"l"][1]) == b"\xff/target"


def test_many_entries_in_one_directory(store: Store) -> None:
    n = 30_000
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(n):
            tar.addfile(ti(f"big/f{i:06d}"), io.BytesIO(b""))
    root = apply(store, None, out.getvalue())
    assert len(paths(store, root)) == n + 1


def test_big_file_is_spooled(store: Store, tmp_path: Path) -> None:
    size = BIG_FILE + 4096
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.truncate(size)
    normalise_root(src)
    want = import_dir(store, src)
    got = apply(store, None, layer_tar(store, None, want))
    assert_same(store, got, want)
    assert not [f for f in os.listdir(store.path("objects", "pack")) if f.startswith("tmp_")]


def test_stats(store: Store, lower: DirRef) -> None:
    with store.pack_writer() as writer:
        stats = apply_layer_tar(TreeEditor(store, lower), writer, io.BytesIO(tar_bytes(
            (ti("d/", tarfile.DIRTYPE), None), (ti("d/f"), b"12345"),
            (ti("d/l", tarfile.SYMTYPE, linkname="f"), None),
            (ti("d/h", tarfile.LNKTYPE, linkname="d/f"), None),
            (ti("d/p", tarfile.FIFOTYPE), None), (ti(".wh.file"), b""),
            (ti("dir/.wh..wh..opq"), b""),
        )))
        writer.abort()
    assert (stats.entries, stats.files, stats.dirs, stats.symlinks, stats.hardlinks,
            stats.specials, stats.whiteouts, stats.opaques, stats.bytes) == (7, 1, 1, 1, 1, 1, 1,
                                                                             1, 5)


# -- import_tar -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_import_tar_compressed_equals_import_directory(store: Store, tmp_path: Path,
                                                       kind: str) -> None:
    build_first(tmp_path / "src")
    data = subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--format=posix", "-cpf",
                           "-", "-C", tmp_path / "src", "."], check=True,
                          capture_output=True).stdout
    if kind != "none":
        data = COMPRESSORS[kind](data)
    (tmp_path / "x.tar").write_bytes(data)
    seen = []
    layer = import_tar(store, tmp_path / "x.tar", "img:tar", AUTHOR, "from a tar",
                       progress=lambda done, total: seen.append((done, total)))
    got = read_layer(store, layer)
    want = read_layer(store, import_directory(store, str(tmp_path / "src"), parse_name("d"),
                                              AUTHOR))
    assert_same(store, got.root, want.root)
    assert got.diff_id == want.diff_id == "sha256:" + hashlib.sha256(
        layer_tar(store, None, got.root)).hexdigest()
    assert store.ref(parse_name("img:tar").ref) == layer
    assert got.message == "from a tar" and got.created_by == "layerctl import x.tar"
    assert seen and seen[-1] == (len(data), len(data)) and seen.count(seen[-1]) == 1


@pytest.mark.parametrize("tool", ["gzip", "zstd", "xz", "bzip2"])
def test_import_tar_compressed_by_cli_tools(store: Store, tmp_path: Path, needs_tool,
                                            tool: str) -> None:
    needs_tool(tool)
    build_first(tmp_path / "src")
    tar = tmp_path / "x.tar"
    subprocess.run(["tar", "--xattrs", "--format=posix", "-cpf", tar, "-C", tmp_path / "src",
                    "."], check=True)
    subprocess.run([tool, "-q", tar], check=True)
    packed = next(p for p in tmp_path.iterdir() if p.name.startswith("x.tar."))
    layer = import_tar(store, packed, "img:cli", AUTHOR)
    assert_same(store, read_layer(store, layer).root, import_dir(store, tmp_path / "src"))


def test_import_tar_from_stdin(store: Store, tmp_path: Path, monkeypatch) -> None:
    data = gzip.compress(tar_bytes((ti("./", tarfile.DIRTYPE, 0o755, 0), None),
                                   (ti("hello"), b"hi")))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    seen = []
    layer = import_tar(store, "-", parse_name("stdin"), AUTHOR,
                       progress=lambda done, total: seen.append((done, total)))
    assert paths(store, read_layer(store, layer).root) == {b"hello"}
    assert seen == [(len(data), len(data))]  # a pipe has no size: one report, at the end


def test_import_tar_store_passes_git_fsck(store: Store, tmp_path: Path, needs_tool) -> None:
    needs_tool("git")
    (tmp_path / "x.tar").write_bytes(tar_bytes(
        (ti(".git/config"), b"[core]"), (ti("a\nb"), b"nl"), (ti("fifo", tarfile.FIFOTYPE), None),
        (ti("sub/link", tarfile.LNKTYPE, linkname="a\nb"), None)))
    import_tar(store, tmp_path / "x.tar", "fsck", AUTHOR)
    out = subprocess.run(["git", "-C", store.root, "fsck", "--strict"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "dangling" not in out.stdout + out.stderr


def test_import_tar_rejects_directories_and_missing_files(store: Store, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="is a directory"):
        import_tar(store, tmp_path, "x", AUTHOR)
    with pytest.raises(BadInput, match="cannot open"):
        import_tar(store, tmp_path / "nope.tar", "x", AUTHOR)


@pytest.mark.slow
def test_debian_rootfs_tar_equals_directory_import(debian_rootfs: Path, tmp_path: Path) -> None:
    """GNU tar of the corpus, imported with import_tar, gives the same layer root."""
    tar = tmp_path / "debian.tar"
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--format=posix", "-cpf", tar,
                    "-C", debian_rootfs, "."], check=True)
    times = {}
    roots = {}
    for kind in ("dir", "tar"):
        store = Store(str(tmp_path / f"store-{kind}"))
        try:
            start = time.perf_counter()
            if kind == "dir":
                layer = import_directory(store, str(debian_rootfs), parse_name("deb"), AUTHOR)
            else:
                layer = import_tar(store, tar, "deb", AUTHOR, limits=Limits(max_entries=100_000))
            times[kind] = time.perf_counter() - start
            roots[kind] = read_layer(store, layer).root, read_layer(store, layer).diff_id
        finally:
            store.close()
    print(f"\nDebian minbase: import_directory {times['dir']:.2f}s, "
          f"import_tar {times['tar']:.2f}s")
    assert roots["tar"] == roots["dir"]


@pytest.mark.parametrize("fmt", ["gnu", "posix", "oldgnu"])
@pytest.mark.parametrize("end", [7 << 20, BIG_FILE + (1 << 20)])  # in memory; spooled
def test_sparse_members_read_with_their_holes(store, tmp_path, fmt, end):
    """GNU tar's sparse members (old GNU 'S' headers, PAX GNU.sparse.*): content with its
    holes, read through the applier's own tar reader, then the next member."""
    from layerctl.store.blobread import BlobReader

    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        f.write(b"head")
        f.seek(3 << 20)
        f.write(b"middle")
        f.seek(end)
        f.write(b"tail")
    (src / "zz-after").write_bytes(b"after")
    out = tmp_path / "s.tar"
    subprocess.run(["tar", f"--format={fmt}", "--sparse", "-C", src, "-cf", out,
                    "holes", "zz-after"], check=True, capture_output=True)
    assert len(out.read_bytes()) < 1 << 20  # the holes are not in the tar
    root = apply(store, None, out.read_bytes())
    got = entries(store, root)
    with BlobReader.for_store(store) as reader:
        holes = reader.submit(got[b"holes"][1], 0).result()
        after = reader.submit(got[b"zz-after"][1], 0).result()
    assert holes == (src / "holes").read_bytes()
    assert after == b"after"
