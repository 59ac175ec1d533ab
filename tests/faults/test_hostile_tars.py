"""Hostile layer tars: each is refused with a BadInput naming the offending entry,
and the store is left exactly as it was (same files, same refs).

Archives are built with Python's tarfile, with GNU tar, or byte by byte where
neither tool will write the attack. A few hostile-looking inputs that are
safe (device nodes, setuid files, odd names, duplicates, type changes) are
accepted and recorded faithfully: nothing is ever created on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from layerctl.changeset.apply import Limits, apply_layer_tar
from layerctl.compress.detect import open_decompressed
from layerctl.errors import BadInput
from layerctl.images import parse_name
from layerctl.importer import import_directory, import_tar
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef, walk
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from tests.tarhelpers import tar_bytes, ti

AUTHOR = "Test <test@example.com>"


# -- fixtures and helpers ----------------------------------------------------------


@pytest.fixture
def parent(store: Store, tmp_path: Path) -> DirRef:
    """A lower layer with a symlink to /etc, a directory and a file."""
    src = tmp_path / "lower"
    (src / "etc").mkdir(parents=True)
    (src / "etc/passwd").write_bytes(b"root:x:0:0\n")
    (src / "dir").mkdir()
    (src / "file").write_bytes(b"f")
    os.symlink("/etc", src / "evil")
    layer = import_directory(store, str(src), parse_name("base:1"), AUTHOR)
    return read_layer(store, layer).root


def store_state(store: Store) -> tuple[dict[str, str], dict[str, str]]:
    """Every file under the store (with a content hash) and every ref."""
    files = {}
    for dirpath, _dirs, names in os.walk(store.root):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, store.root)] = hashlib.sha256(f.read()).hexdigest()
    return files, store.refs_under("refs")


def header(name: bytes, size: int, typeflag: bytes = b"0", linkname: bytes = b"") -> bytes:
    """A raw ustar header, for attacks tarfile refuses to write."""
    size_field = b"%011o\0" % size if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    h = (name.ljust(100, b"\0") + b"0000644\0" + b"0000000\0" * 2 + size_field
         + b"00000001750\0" + b" " * 8 + typeflag + linkname.ljust(100, b"\0")
         + b"ustar\x0000" + b"\0" * 247)
    return h[:148] + b"%06o\0 " % sum(h) + h[156:]


def gnu_tar(tmp_path: Path, *args: str | Path) -> bytes:
    out = tmp_path / "gnu.tar"
    subprocess.run(["tar", "--format=posix", "-cf", out, *args], check=True,
                   capture_output=True)
    return out.read_bytes()


def apply_layer(store: Store, parent: DirRef | None, data: bytes, whiteouts: bool = True,
                limits: Limits | None = None) -> DirRef:
    """The import pipeline of a layer: one pack writer, aborted on error."""
    kw = {"limits": limits} if limits else {}
    with store.pack_writer() as writer:
        editor = TreeEditor(store, parent)
        apply_layer_tar(editor, writer, open_decompressed(io.BytesIO(data)),
                        whiteouts=whiteouts, **kw)
        root = editor.write(writer)
        writer.finish()
    store.landed()
    return root


def refused(store: Store, run: Callable[[], object], *names: str) -> str:
    """Run `run`, expect a BadInput naming each of `names`; the store must not change."""
    before = store_state(store)
    with pytest.raises(BadInput) as err:
        run()
    message = str(err.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    assert store_state(store) == before
    return message


# -- paths -------------------------------------------------------------------------


def test_dotdot_path(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("../evil"), b"x"))
    refused(store, lambda: apply_layer(store, parent, data), "'../evil'", "'..'")


def test_dotdot_inside_path(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("dir/ok"), b"fine"), (ti("dir/../../etc/shadow"), b"x"))
    refused(store, lambda: apply_layer(store, parent, data), "'dir/../../etc/shadow'")


def test_absolute_path(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("/etc/passwd"), b"pwned"))
    refused(store, lambda: apply_layer(store, parent, data), "'/etc/passwd'", "absolute")


def test_absolute_path_from_gnu_tar_P(store: Store, tmp_path: Path) -> None:
    (tmp_path / "victim").write_bytes(b"v")
    data = gnu_tar(tmp_path, "-P", tmp_path / "victim")
    (tmp_path / "abs.tar").write_bytes(data)
    refused(store, lambda: import_tar(store, tmp_path / "abs.tar", "x", AUTHOR),
            str(tmp_path / "victim"), "absolute")


def test_write_through_symlink_in_same_tar(store: Store) -> None:
    data = tar_bytes((ti("evil", tarfile.SYMTYPE, linkname="/etc"), None),
                     (ti("evil/passwd"), b"x"))
    msg = refused(store, lambda: apply_layer(store, None, data), "'evil/passwd'", "'evil'")
    assert "symlink" in msg


def test_write_through_symlink_in_lower_layer(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("evil/cron.d/job"), b"* * * * * root sh"))
    refused(store, lambda: apply_layer(store, parent, data), "'evil/cron.d/job'", "symlink")


def test_write_through_relative_symlink_built_by_gnu_tar(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("../../..", src / "up")
    (src / "x").write_bytes(b"payload")
    data = gnu_tar(tmp_path, "-C", src, "--transform", "s,^x$,up/x,", "up", "x")
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(data))] == ["up", "up/x"]
    (tmp_path / "t.tar").write_bytes(data)
    refused(store, lambda: import_tar(store, tmp_path / "t.tar", "x", AUTHOR), "'up/x'",
            "'up' is a symlink")


def test_parent_is_a_regular_file(store: Store) -> None:
    data = tar_bytes((ti("f"), b"file"), (ti("f/child"), b"x"))
    refused(store, lambda: apply_layer(store, None, data), "'f/child'", "not a directory")


def test_nul_in_name(store: Store) -> None:
    data = tar_bytes((ti("safe", pax={"path": "a\x00/../../b"}), b"x"))
    refused(store, lambda: apply_layer(store, None, data), "NUL", "'a\\x00/../../b'")


def test_path_too_long(store: Store) -> None:
    name = "d/" * 40 + "f"
    data = tar_bytes((ti(name), b"x"))
    refused(store, lambda: apply_layer(store, None, data, limits=Limits(max_path_length=64)),
            repr(name), "longer than 64")


def test_path_too_deep(store: Store) -> None:
    name = "d/" * 600 + "f"
    data = tar_bytes((ti(name), b"x"))
    refused(store, lambda: apply_layer(store, None, data), "'d/d/d/", "deeper than 512")


def test_deep_whiteouts_and_opaques_repeated(store: Store, parent: DirRef) -> None:
    """Whiteouts and opaque markers repeated for a deep tree cost no more than once."""
    deep = "/".join(["d"] * 400)
    members = [(ti(deep + "/f"), b"f")]
    for _ in range(200):
        members += [(ti(".wh.d"), b""), (ti("d/.wh..wh..opq"), b""), (ti(deep + "/.wh.x"), b"")]
    root = apply_layer(store, parent, tar_bytes(*members))
    got = {p for p, _m, _o in walk(store, root)}
    assert deep.encode() + b"/f" in got and b"dir" in got


# -- hardlinks -------------------------------------------------------------------------


def test_hardlink_to_absolute_target(store: Store) -> None:
    data = tar_bytes((ti("shadow", tarfile.LNKTYPE, linkname="/etc/shadow"), None))
    refused(store, lambda: apply_layer(store, None, data), "'shadow'", "'/etc/shadow'")


def test_hardlink_outside_the_root(store: Store) -> None:
    data = tar_bytes((ti("x", tarfile.LNKTYPE, linkname="../../etc/shadow"), None))
    refused(store, lambda: apply_layer(store, None, data), "'x'", "'../../etc/shadow'")


def test_hardlink_to_missing_target(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("x", tarfile.LNKTYPE, linkname="nowhere"), None))
    refused(store, lambda: apply_layer(store, parent, data), "'x'", "'nowhere'",
            "does not exist")


def test_hardlink_to_a_later_entry(store: Store) -> None:
    data = tar_bytes((ti("early", tarfile.LNKTYPE, linkname="late"), None), (ti("late"), b"l"))
    refused(store, lambda: apply_layer(store, None, data), "'early'", "'late'")


def test_hardlink_to_directory(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("d", tarfile.LNKTYPE, linkname="dir"), None))
    refused(store, lambda: apply_layer(store, parent, data), "'d'", "'dir'", "directory")


def test_hardlink_through_symlink(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("stolen", tarfile.LNKTYPE, linkname="evil/passwd"), None))
    refused(store, lambda: apply_layer(store, parent, data), "'stolen'", "'evil'", "symlink")


# -- whiteouts ---------------------------------------------------------------------------


def test_whiteout_of_parent(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("dir/.wh.."), b""))
    refused(store, lambda: apply_layer(store, parent, data), "'dir/.wh..'")


def test_whiteout_of_root(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti(".wh."), b""))
    refused(store, lambda: apply_layer(store, parent, data), "'.wh.'")


def test_whiteout_outside(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("../.wh.etc"), b""))
    refused(store, lambda: apply_layer(store, parent, data), "'../.wh.etc'")


def test_whiteout_through_symlink(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("evil/.wh.passwd"), b""))
    refused(store, lambda: apply_layer(store, parent, data), "'evil/.wh.passwd'", "symlink")


def test_opaque_through_symlink(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("evil/.wh..wh..opq"), b""))
    refused(store, lambda: apply_layer(store, parent, data), "'evil/.wh..wh..opq'", "symlink")


def test_whiteout_used_as_directory(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti(".wh.dir/x"), b""))
    refused(store, lambda: apply_layer(store, parent, data), "'.wh.dir/x'")


def test_whiteout_in_root_filesystem_tar(store: Store, tmp_path: Path) -> None:
    (tmp_path / "r.tar").write_bytes(tar_bytes((ti("etc/.wh.passwd"), b"")))
    refused(store, lambda: import_tar(store, tmp_path / "r.tar", "x", AUTHOR),
            "'etc/.wh.passwd'")


# -- duplicates and type changes --------------------------------------------------------------


def test_duplicate_then_write_below_a_file(store: Store) -> None:
    data = tar_bytes((ti("a/", tarfile.DIRTYPE), None), (ti("a/x"), b"x"), (ti("a"), b"file"),
                     (ti("a/y"), b"y"))
    refused(store, lambda: apply_layer(store, None, data), "'a/y'", "not a directory")


def test_symlink_replacing_directory_then_write_through(store: Store, parent: DirRef) -> None:
    data = tar_bytes((ti("dir", tarfile.SYMTYPE, linkname="/root"), None),
                     (ti("dir/.ssh/keys"), b"k"))
    refused(store, lambda: apply_layer(store, parent, data), "'dir/.ssh/keys'", "symlink")


def test_safe_duplicates_and_type_changes_are_accepted(store: Store, parent: DirRef) -> None:
    data = tar_bytes(
        (ti("file/", tarfile.DIRTYPE), None), (ti("file/in"), b"i"),  # file -> directory
        (ti("dir"), b"dir -> file"), (ti("dir"), b"again"),  # directory -> file, twice
        (ti("evil"), b"a plain file replaces the symlink"),
        (ti("./evil", mode=0o600), b"x"),  # the same path again: the later entry wins
    )
    root = apply_layer(store, parent, data)
    got = {p: m for p, m, _ in walk(store, root)}
    assert got[b"file"].kind == "d" and got[b"dir"].kind == "-" and got[b"evil"].mode == 0o600


def test_devices_and_setuid_are_recorded_not_created(store: Store, tmp_path: Path) -> None:
    info = ti("dev/sda", tarfile.BLKTYPE, mode=0o660)
    info.devmajor, info.devminor = 8, 0
    data = tar_bytes((info, None), (ti("bin/sh", mode=0o6755), b"#!"),
                     (ti("dev/mem", tarfile.CHRTYPE, mode=0o640), None))
    root = apply_layer(store, None, data, whiteouts=False)
    got = {p: m for p, m, _ in walk(store, root)}
    assert got[b"dev/sda"].rdev == (8, 0) and got[b"bin/sh"].mode == 0o6755
    assert not (tmp_path / "dev").exists() and not os.path.exists(store.path("dev"))


def test_invalid_utf8_names_are_kept_not_refused(store: Store) -> None:
    name = b"caf\xe9/\xff\xfe".decode("utf-8", "surrogateescape")
    root = apply_layer(store, None, tar_bytes((ti(name), b"x"), fmt=tarfile.GNU_FORMAT))
    assert b"caf\xe9/\xff\xfe" in {p for p, _m, _o in walk(store, root)}


# -- truncation and corruption -------------------------------------------------------------------


def test_declared_size_past_the_end(store: Store, tmp_path: Path) -> None:
    data = tar_bytes((ti("ok"), b"fine"), (ti("big"), b"x" * 10_000))
    cut = data[: data.index(b"x" * 100) + 600]
    (tmp_path / "t.tar").write_bytes(cut)
    refused(store, lambda: import_tar(store, tmp_path / "t.tar", "x", AUTHOR), "'big'",
            "truncated")


def test_big_file_truncated_while_spooling(store: Store) -> None:
    from layerctl.store.objects import BIG_FILE

    data = header(b"huge", BIG_FILE + 1) + bytes(1 << 20)
    refused(store, lambda: apply_layer(store, None, data), "'huge'", "truncated")
    assert not [n for n in os.listdir(store.path("objects", "pack")) if n.startswith("tmp_")]


def test_truncated_in_a_header(store: Store) -> None:
    data = tar_bytes((ti("first"), b"1" * 512), (ti("second"), b"2"), fmt=tarfile.USTAR_FORMAT)
    cut = data[: 512 + 512 + 200]
    refused(store, lambda: apply_layer(store, None, cut), "'first'", "truncated")


def test_corrupt_header_after_first_entry(store: Store) -> None:
    data = bytearray(tar_bytes((ti("first"), b"1"), (ti("second"), b"2"),
                               fmt=tarfile.USTAR_FORMAT))
    data[1024 + 10] ^= 0x40  # the second header's name: its checksum no longer matches
    refused(store, lambda: apply_layer(store, None, bytes(data)), "'first'", "corrupt tar")


def test_not_a_tar(store: Store, tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"this is not a tar archive" * 100)
    refused(store, lambda: import_tar(store, tmp_path / "x.tar", "x", AUTHOR), "not a tar")


def test_truncated_gzip(store: Store, tmp_path: Path) -> None:
    raw = tar_bytes((ti("small"), b"s"), (ti("payload"), os.urandom(200_000)))
    gz = gzip.compress(raw)
    (tmp_path / "t.tar.gz").write_bytes(gz[: len(gz) // 2])
    refused(store, lambda: import_tar(store, tmp_path / "t.tar.gz", "x", AUTHOR),
            "truncated gzip", "'payload'")


def test_gzip_cut_just_before_its_trailer(store: Store, tmp_path: Path) -> None:
    gz = gzip.compress(tar_bytes((ti("only"), b"o")))
    (tmp_path / "t.tar.gz").write_bytes(gz[:-4])
    refused(store, lambda: import_tar(store, tmp_path / "t.tar.gz", "x", AUTHOR),
            "truncated gzip", "'only'")


def test_corrupt_gzip(store: Store, tmp_path: Path) -> None:
    gz = bytearray(gzip.compress(tar_bytes((ti("text"), b"hello world\n" * 5000))))
    gz[len(gz) // 2] ^= 0xFF
    (tmp_path / "t.tar.gz").write_bytes(bytes(gz))
    refused(store, lambda: import_tar(store, tmp_path / "t.tar.gz", "x", AUTHOR),
            "gzip data", "'text'")


def test_truncated_zstd(store: Store, tmp_path: Path) -> None:
    raw = tar_bytes((ti("payload"), os.urandom(300_000)))
    zst = zstandard.ZstdCompressor().compress(raw)
    (tmp_path / "t.tar.zst").write_bytes(zst[: len(zst) - 1000])
    refused(store, lambda: import_tar(store, tmp_path / "t.tar.zst", "x", AUTHOR),
            "truncated zstd", "'payload'")


def test_corrupt_zstd(store: Store, tmp_path: Path) -> None:
    text = b"".join(b"line %d\n" % i for i in range(100_000))
    zst = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(
        tar_bytes((ti("text"), text))))
    zst[len(zst) // 2] ^= 0xFF
    (tmp_path / "t.tar.zst").write_bytes(bytes(zst))
    refused(store, lambda: import_tar(store, tmp_path / "t.tar.zst", "x", AUTHOR),
            "zstd data", "'text'")


# -- limits ----------------------------------------------------------------------------------------


def test_decompression_bomb(store: Store, tmp_path: Path) -> None:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w|") as tar:
            info = ti("zeros")
            info.size = 64 << 20
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert len(out.getvalue()) < 200_000
    (tmp_path / "bomb.tar.gz").write_bytes(out.getvalue())
    refused(store, lambda: import_tar(store, tmp_path / "bomb.tar.gz", "x", AUTHOR,
                                      limits=Limits(max_total_bytes=8 << 20)),
            "'zeros'", "limit")


def test_zstd_bomb_of_tar_padding(store: Store) -> None:
    """A tiny tar followed by gigabytes of zeros after its end-of-archive marker."""
    c = zstandard.ZstdCompressor(level=19)
    data = c.compress(tar_bytes((ti("tiny"), b"t")) + bytes(256 << 20))
    assert len(data) < 100_000
    refused(store, lambda: apply_layer(store, None, data, limits=Limits(max_total_bytes=1 << 20)),
            "'tiny'", "limit")


def test_declared_file_size_over_limit(store: Store) -> None:
    info = ti("huge", pax={"size": str(10**15)})
    data = tar_bytes((info, None))
    refused(store, lambda: apply_layer(store, None, data,
                                       limits=Limits(max_file_size=1 << 30)),
            "'huge'", "exceeds the limit")


def test_too_many_entries(store: Store) -> None:
    data = tar_bytes(*((ti(f"f{i}"), b"") for i in range(20)))
    refused(store, lambda: apply_layer(store, None, data, limits=Limits(max_entries=10)),
            "'f10'", "more than 10 entries")


def test_huge_pax_header(store: Store) -> None:
    data = tar_bytes((ti("before"), b"b"), (ti("after", pax={"comment": "x" * 100_000}), b"a"))
    refused(store, lambda: apply_layer(store, None, data,
                                       limits=Limits(max_header_bytes=10_000)),
            "'before'", "extended header")


def test_huge_gnu_longname_declared(store: Store) -> None:
    data = (tar_bytes((ti("before"), b"b"), fmt=tarfile.USTAR_FORMAT)[:1024]
            + header(b"././@LongLink", 1 << 40, b"L") + b"\0" * 1024)
    refused(store, lambda: apply_layer(store, None, data), "'before'", "extended header")


def test_many_files_in_one_directory_work(store: Store) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|gz") as tar:
        for i in range(20_000):
            tar.addfile(ti(f"flat/{i}"))
    root = apply_layer(store, None, out.getvalue())
    assert sum(1 for _ in walk(store, root)) == 20_002
