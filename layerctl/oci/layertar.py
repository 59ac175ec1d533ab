"""Layer changeset tars, written deterministically from a tree diff.

The same two trees always give the same bytes, so a layer's DiffID (the
sha256 of this tar) is stable: deletions become `.wh.NAME` whiteouts, a
directory whose old entries are all gone gets an opaque `.wh..wh..opq`,
metadata travels in PAX records (nanosecond mtime, SCHILY.xattr.*).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterable
from typing import BinaryIO

from layerctl.store.diff import DELETED, Change, diff
from layerctl.store.fstree import DirRef
from layerctl.store.meta import BLOCK, CHAR, DIR, FIFO, FILE, SOCKET, SYMLINK, Meta

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_TAR_TYPES = {
    FILE: tarfile.REGTYPE,
    DIR: tarfile.DIRTYPE,
    SYMLINK: tarfile.SYMTYPE,
    CHAR: tarfile.CHRTYPE,
    BLOCK: tarfile.BLKTYPE,
    FIFO: tarfile.FIFOTYPE,
}


def _name(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def _info(path: bytes, meta: Meta) -> tarfile.TarInfo:
    info = tarfile.TarInfo(_name(path) + ("/" if meta.kind == DIR else ""))
    info.type = _TAR_TYPES[meta.kind]
    info.mode = meta.mode
    info.uid, info.gid = meta.uid, meta.gid
    info.uname = info.gname = ""
    sec, nsec = divmod(meta.mtime_ns, 1_000_000_000)
    info.mtime = sec
    pax = {}
    if nsec or sec < 0:
        pax["mtime"] = f"{sec}.{nsec:09d}".rstrip("0").rstrip(".")
    for name, value in meta.xattrs:
        pax["SCHILY.xattr." + _name(name)] = value.decode("utf-8", "surrogateescape")
    if meta.rdev is not None:
        info.devmajor, info.devminor = meta.rdev
    info.pax_headers = pax
    return info


def _whiteout(path: bytes) -> tarfile.TarInfo:
    head, tail = posixpath.split(_name(path))
    info = tarfile.TarInfo(posixpath.join(head, WHITEOUT_PREFIX + tail))
    info.mode = 0o644
    info.uname = info.gname = ""
    return info


class _Sink:
    """A write-only file that hashes what passes through it."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def write_changes(store: object, changes: Iterable[Change], out: BinaryIO | None = None) -> str:
    """Write a layer tar for `changes` to `out` (None: only hash it); returns the DiffID."""
    sink = _Sink(out)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for change in changes:
            if change.status == DELETED:
                tar.addfile(_whiteout(change.path))
                continue
            meta = change.new
            if meta.kind == SOCKET:
                continue  # tar has no sockets; they are runtime artefacts
            info = _info(change.path, meta)
            if meta.link is not None:
                info.type = tarfile.LNKTYPE
                info.linkname = _name(meta.link)
                tar.addfile(info)
            elif meta.kind == FILE:
                data = store.read_blob(change.new_blob)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif meta.kind == SYMLINK:
                info.linkname = _name(store.read_blob(change.new_blob))
                tar.addfile(info)
            else:
                tar.addfile(info)
            if change.opaque:
                tar.addfile(_whiteout(change.path + b"/" + OPAQUE[len(WHITEOUT_PREFIX):].encode()))
    return "sha256:" + sink.sha256.hexdigest()


def write_layer_tar(
    store: object, parent: DirRef | None, layer: DirRef, out: BinaryIO | None = None
) -> str:
    """The changeset tar of `layer` against `parent`; returns its DiffID."""
    return write_changes(store, diff(store, parent, layer), out)
