"""Writing layer tars fast without changing a byte (issue 16).

A base layer's tar is written from one walk of its tree; the general path diffs the
tree against the empty one. Both must give the same bytes (the DiffID), for every
kind of entry, whether hashed only, written to a file or sent through save's blob
pipeline. Headers are built around their checksum and gathered into blocks; small
blobs are inflated in batches on reader threads; record names are unescaped by
splitting: each is checked here against what it replaced.
"""

from __future__ import annotations

import io
import itertools
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerctl.changeset.tar import entry_header
from layerctl.changeset.write import write_changeset
from layerctl.compress.detect import GZIP, NONE
from layerctl.errors import BadInput, Corrupt
from layerctl.images import parse_name
from layerctl.importer import import_directory
from layerctl.oci.archive.blobs import write_layer_blob
from layerctl.store.blobread import BlobReader
from layerctl.store.fstree import DirRef, walk
from layerctl.store.layers import read_layer
from layerctl.store.meta import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK, Meta
from layerctl.store.names import unescape

AUTHOR = "Test <test@example.com>"
NS = 1_000_000_000


def every_kind(top: Path) -> None:
    """A tree holding every kind of entry and every header form the writer has."""
    top.mkdir()
    os.chmod(top, 0o711)  # a root unlike the empty filesystem's: a `./` entry
    os.utime(top, ns=(5 * NS, 5 * NS))
    (top / "etc").mkdir()
    (top / "etc/passwd").write_bytes(b"root:x:0:0\n")
    (top / "etc/empty").write_bytes(b"")
    (top / "bin").mkdir()
    (top / "bin/sh").write_bytes(b"\x7fELF" + bytes(range(256)) * 300)  # > 64 KiB: one task
    os.chmod(top / "bin/sh", 0o755)
    (top / "bin/su").write_bytes(b"su")
    os.chmod(top / "bin/su", 0o4755)
    (top / "big").write_bytes(os.urandom(300 << 10))  # > 256 KiB: written without a copy
    os.link(top / "bin/sh", top / "bin/sh-hardlink")
    os.link(top / "bin/sh", top / "etc/sh-elsewhere")
    os.symlink("../etc/passwd", top / "bin/passwd-link")
    os.symlink("t" * 150, top / "long-target")  # linkname > 100: PAX linkpath
    os.symlink(os.fsdecode(b"\xff-target"), top / "odd-target")
    os.mkfifo(top / "fifo")
    os.mknod(top / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(top / "loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    (top / "empty-dir").mkdir()
    (top / "many").mkdir()  # more small blobs than one batch of the reader holds
    for i in range(80):
        (top / f"many/f{i:02d}").write_bytes(b"small %d\n" % i * (i + 1))
    deep = top / "a/b/c/d/e"
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf")
    (top / "a/zz-after-subdir").write_bytes(b"z")
    (top / "a/0-before-subdir").write_bytes(b"0")  # names sorted, not dirs then files
    (top / "a/b-c").write_bytes(b"b-c")  # git sorts the tree "b" as "b/": after "b-c"
    (top / ("n" * 120)).write_bytes(b"long name: PAX path")
    (top / "d" / ("m" * 90)).mkdir(parents=True)
    (top / "d" / ("m" * 90) / ("o" * 40)).write_bytes(b"path over 100 bytes")
    (top / os.fsdecode(b"\xff\xfe-bytes")).write_bytes(b"not utf-8")
    (top / "caf\u00e9").write_bytes(b"utf-8, not ascii")
    (top / "new\nline").write_bytes(b"nl")
    (top / "sp ace").write_bytes(b"space")
    (top / "%2e").write_bytes(b"a name that is escaped in records")
    (top / ".git").mkdir()  # stored mangled
    (top / ".git/HEAD").write_bytes(b"ref: x\n")
    (top / "xattr").write_bytes(b"x")
    os.setxattr(top / "xattr", b"user.keep", b"\x00\x01\xff")
    (top / "owned").write_bytes(b"o")
    os.chown(top / "owned", 1000, 3_000_000)  # gid >= 8**7: PAX gid
    times = {"etc/passwd": 1_700_000_000_123_456_789, "bin/su": 1_600_000_000 * NS,
             "etc/empty": -NS - 1, "fifo": 8**11 * NS}
    for path in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
        rel = path.relative_to(top).as_posix()
        ns = times.get(rel, 1_690_000_000 * NS)
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


@pytest.fixture
def base(store, tmp_path: Path) -> DirRef:  # noqa: ANN001 - the conftest Store
    every_kind(tmp_path / "src")
    layer_id = import_directory(store, str(tmp_path / "src"), parse_name("kinds:1"), AUTHOR)
    return read_layer(store, layer_id).root


def kinds(store, root: DirRef) -> set[str]:  # noqa: ANN001
    found = set()
    for _path, meta, _obj in walk(store, root):
        found.add("hardlink" if meta.link is not None else meta.kind)
    return found


def test_base_layer_walk_gives_the_diffing_path_bytes(store, base: DirRef) -> None:  # noqa: ANN001
    assert kinds(store, base) >= {FILE, DIR, SYMLINK, CHAR, BLOCK, FIFO, "hardlink"}
    general = io.BytesIO()
    diff_id, size = write_changeset(store, None, base, general, diffing=True)
    walked = io.BytesIO()
    assert write_changeset(store, None, base, walked) == (diff_id, size)
    assert walked.getvalue() == general.getvalue()
    assert size == len(general.getvalue())
    # hashing only (import, fsck) gives the same DiffID
    assert write_changeset(store, None, base) == (diff_id, size)


@pytest.mark.parametrize("compression", [NONE, GZIP])
def test_saved_blob_of_a_base_layer_is_the_diffing_path_tar(store, base: DirRef,  # noqa: ANN001
                                                            compression: str) -> None:
    general = io.BytesIO()
    diff_id, _ = write_changeset(store, None, base, general, diffing=True)
    out = io.BytesIO()
    with BlobReader.for_store(store) as reader:
        info = write_layer_blob(store, None, base, out, compression, reader)
    assert info.diff_id == diff_id
    if compression == NONE:
        assert out.getvalue() == general.getvalue()
    else:
        import gzip

        assert gzip.decompress(out.getvalue()) == general.getvalue()


@pytest.mark.parametrize("compression", [NONE, GZIP])
def test_contents_read_from_a_layer_dir_give_the_same_tar(store, base: DirRef,  # noqa: ANN001
                                                          tmp_path: Path,
                                                          compression: str) -> None:
    """The imported directory stands in for the layer's dir: every regular file's
    content is read from it (checked against its blob id), and the bytes do not move."""
    general = io.BytesIO()
    diff_id, _ = write_changeset(store, None, base, general, diffing=True)
    out = io.BytesIO()
    with BlobReader.for_store(store) as reader:
        info = write_layer_blob(store, None, base, out, compression, reader,
                                layer_dir=os.fsencode(tmp_path / "src"))
    assert info.diff_id == diff_id
    if compression == NONE:
        assert out.getvalue() == general.getvalue()
    contents = {p.stat().st_ino for p in (tmp_path / "src").rglob("*")
                if p.is_file() and not p.is_symlink()}
    assert reader.from_files == len(contents) > 80 and reader.mismatched == 0


# -- headers: the field-by-field construction they replaced -------------------------


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def reference_ustar(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                    typeflag: bytes, linkname: bytes, major: int = 0, minor: int = 0) -> bytes:
    header = b"".join((
        name[:100].ljust(100, b"\0"), _octal(mode, 8), _octal(uid, 8), _octal(gid, 8),
        _octal(size, 12), _octal(mtime, 12), b" " * 8, typeflag,
        linkname[:100].ljust(100, b"\0"), b"ustar\x0000", b"\0" * 64, _octal(major, 8),
        _octal(minor, 8), b"\0" * 167,
    ))
    return header[:148] + b"%06o\0 " % sum(header) + header[156:]


TYPEFLAGS = {FILE: b"0", SYMLINK: b"2", CHAR: b"3", BLOCK: b"4", DIR: b"5", FIFO: b"6"}


@settings(max_examples=3000, deadline=None)
@given(
    kind=st.sampled_from([FILE, DIR, SYMLINK, CHAR, BLOCK, FIFO]),
    mode=st.sampled_from([0, 0o644, 0o4755, 0o7777, 0o17777777]),  # the last one overflows
    uid=st.sampled_from([0, 1000, 8**7 - 1]),
    gid=st.sampled_from([0, 65534, 8**7 - 1]),
    sec=st.one_of(st.integers(0, 8**11 - 1), st.sampled_from([0, 8**11 - 1])),
    size=st.sampled_from([0, 1, 511, 8**11 - 1]),
    rdev=st.sampled_from([None, (0, 0), (1, 3), (8**7, 1)]),  # the last one overflows
    name=st.binary(min_size=1, max_size=100).filter(lambda b: b.isascii()),
    link=st.sampled_from([b"", b"t", b"x" * 100]),
)
def test_ustar_only_headers_are_the_field_by_field_ones(
        kind: str, mode: int, uid: int, gid: int, sec: int, size: int,
        rdev: tuple[int, int] | None, name: bytes, link: bytes) -> None:
    meta = Meta(kind, mode, uid, gid, sec * NS, rdev=rdev if kind in (CHAR, BLOCK) else None)
    want = reference_ustar(name, mode, uid, gid, size, sec, TYPEFLAGS[kind], link,
                           *(meta.rdev or (0, 0)))
    got = entry_header(name, meta, size, None, link)
    assert got == want
    assert len(got) == 512 or mode > 0o7777777 or (meta.rdev or (0, 0))[0] >= 8**7


def test_pax_headers_keep_their_ustar_part() -> None:
    meta = Meta(FILE, 0o644, 8**7, 0, 1_700_000_000_123_456_789,
                xattrs=((b"user.a", b"\xff"),))
    got = entry_header(b"p" * 150, meta, 10)
    pax, rest = got[:512], got[512:]
    data_blocks = (len(rest) - 512) // 512 * 512
    assert pax == reference_ustar(b"PaxHeaders/" + b"p" * 80, 0o644, 0, 0,
                                  int(pax[124:135], 8), 0, b"x", b"")
    assert rest[data_blocks:] == reference_ustar(b"p" * 150, 0o644, 8**7 - 1, 0, 10,
                                                 1_700_000_000, b"0", b"")
    assert b"uid=2097152" in rest[:data_blocks] and b"SCHILY.xattr.user.a=" in rest


# -- reading blobs in batches ----------------------------------------------------------


def test_batched_blobs_come_back_whatever_order_results_are_asked(store, base: DirRef  # noqa: ANN001
                                                                  ) -> None:
    blobs = [(obj, meta.size) for _p, meta, obj in walk(store, base)
             if meta.kind == FILE and meta.link is None and isinstance(obj, bytes)]
    assert len(blobs) > 64
    with BlobReader.for_store(store) as reader:
        first = [reader.submit(b, s) for b, s in blobs[:3]]
        # asked for before its batch is full: it is sent as it is ...
        assert first[0].result() == store.read_blob(blobs[0][0])
        # ... and what comes after goes to a new batch, not into the one sent
        rest = [reader.submit(b, s) for b, s in blobs[3:]]
        for pending, (blob, _size) in reversed(list(zip(first + rest, blobs, strict=True))):
            assert pending.result() == store.read_blob(blob)


# -- record names ----------------------------------------------------------------------


def reference_unpercent(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x25:
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def outcome(fn, arg):  # noqa: ANN001, ANN201
    try:
        return fn(arg)
    except ValueError:
        return ValueError


def test_unescape_is_the_byte_walk_it_replaced_malformed_input_included() -> None:
    alphabet = "%0aF9g +-_"
    for n in range(5):
        for chars in itertools.product(alphabet, repeat=n):
            token = "".join(chars)
            assert outcome(unescape, token) == outcome(
                reference_unpercent, token.encode()), token


def test_a_damaged_blob_fails_alone_as_corrupt_not_its_batch(store, base: DirRef,  # noqa: ANN001
                                                            tmp_path: Path) -> None:
    """A pack whose bytes were damaged inside one small object's deflate stream: that
    blob's result() raises Corrupt (a one-line error, not ISA-L's exception as a
    traceback), the other blobs of its batch still come back whole."""
    blobs = [(obj, meta.size) for _p, meta, obj in walk(store, base)
             if meta.kind == FILE and meta.link is None and isinstance(obj, bytes)
             and 100 < meta.size < 4096]
    victim = blobs[len(blobs) // 2][0]
    pack_dir = store.path("objects", "pack")
    for name in os.listdir(pack_dir):
        if name.endswith(".idx"):
            base_path = os.path.join(pack_dir, name[:-4])
            with BlobReader([base_path], store.read_blob) as one:
                found = one._locate(victim)
            if found is not None:
                pos = found[1]
                break
    else:
        pytest.fail("the blob is in no pack")
    copy = tmp_path / "damaged"
    data = bytearray(Path(base_path + ".pack").read_bytes())
    for i in range(pos + 2, pos + 10):  # past the zlib header, into the deflate blocks
        data[i] ^= 0xFF
    copy.with_suffix(".pack").write_bytes(data)
    copy.with_suffix(".idx").write_bytes(Path(base_path + ".idx").read_bytes())
    with BlobReader([str(copy)], store.read_blob) as reader:
        pending = [(reader.submit(b, s), b) for b, s in blobs]
        for job, blob in pending:
            if blob == victim:
                with pytest.raises(Corrupt, match="store is damaged"):
                    job.result()
            else:
                assert job.result() == store.read_blob(blob)


@pytest.mark.parametrize("diffing", [False, True])
@pytest.mark.parametrize("name", [".wh.dir/inner", "dir/.wh.nested", "dir/sub/.wh..wh..opq"])
def test_whiteout_names_refused_on_both_paths(store, tmp_path: Path, name: str,  # noqa: ANN001
                                              diffing: bool) -> None:
    src = tmp_path / "src"
    (src / name).parent.mkdir(parents=True)
    (src / name).write_bytes(b"a real file")
    layer_id = import_directory(store, str(src), parse_name("wh:1"), AUTHOR)
    root = read_layer(store, layer_id).root
    bad = next(p for p in name.split("/") if p.startswith(".wh."))
    with pytest.raises(BadInput, match=r"\.wh\..*: a layer tar cannot hold") as caught:
        write_changeset(store, None, root, strict=True, diffing=diffing)
    assert bad in str(caught.value)
    write_changeset(store, None, root, diffing=diffing)  # not strict: written (DiffIDs)
