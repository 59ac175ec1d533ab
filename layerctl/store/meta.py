"""Per-entry metadata git cannot hold, and the per-directory record format.

A record is the text of one directory: a line for the directory itself ('.')
and one per non-directory child, sorted by name bytes. Subdirectories carry
their own record, so touching a file rewrites only the records on its path.

    . d 0755 0:0 1690000000.123456789
    passwd - 0644 0:0 1690000000.000000000 size=1234
    ping - 0755 0:0 1690000000.000000000 size=1 x:security.capability=%01%00
    null c 0666 0:0 1690000000.000000000 rdev=1,3
    perl5.36.0 - 0755 0:0 1690000000.000000000 size=9 link=usr/bin/perl
"""

from __future__ import annotations

import os
import stat

from layerctl.record import Frozen
from layerctl.store.names import escape, unescape

# ls(1) type letters.
FILE, DIR, SYMLINK, CHAR, BLOCK, FIFO, SOCKET = "-", "d", "l", "c", "b", "p", "s"
# The one word for each kind, in every output (status details, patches, previews).
KIND_NAMES = {FILE: "file", DIR: "directory", SYMLINK: "symlink", CHAR: "char device",
              BLOCK: "block device", FIFO: "fifo", SOCKET: "socket"}
# overlayfs's own xattrs: in a layer dir the kernel acts on them (an opaque or redirected
# dir), and a merged dir never shows them, so they are never an image's content
OVERLAY_PRIVATE = b"trusted.overlay."
_FMT = {
    FILE: stat.S_IFREG,
    DIR: stat.S_IFDIR,
    SYMLINK: stat.S_IFLNK,
    CHAR: stat.S_IFCHR,
    BLOCK: stat.S_IFBLK,
    FIFO: stat.S_IFIFO,
    SOCKET: stat.S_IFSOCK,
}
_KIND_OF_FMT = {v: k for k, v in _FMT.items()}
DEVICE_KINDS = (CHAR, BLOCK)


class Meta(Frozen):
    """Everything about one filesystem entry except its content."""

    __slots__ = ("kind", "mode", "uid", "gid", "mtime_ns", "size", "rdev", "xattrs", "link")

    def __init__(self, kind: str, mode: int, uid: int = 0, gid: int = 0, mtime_ns: int = 0,
                 size: int = 0, rdev: tuple[int, int] | None = None,
                 xattrs: tuple[tuple[bytes, bytes], ...] = (), link: bytes | None = None):
        self.kind = kind
        self.mode = mode  # permission bits, 0o7777
        self.uid = uid
        self.gid = gid
        self.mtime_ns = mtime_ns
        self.size = size  # regular files only
        self.rdev = rdev  # (major, minor) for devices
        self.xattrs = xattrs
        self.link = link  # hardlink: path of the group's first member

    # Written out (not Record's generic ones): trees are compared entry by entry
    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Meta or not isinstance(other, Meta):  # (narrows the type)
            return NotImplemented
        o = other
        return (self.kind == o.kind and self.mode == o.mode and self.uid == o.uid
                and self.gid == o.gid and self.mtime_ns == o.mtime_ns and self.size == o.size
                and self.rdev == o.rdev and self.xattrs == o.xattrs and self.link == o.link)

    def __hash__(self) -> int:
        return hash((self.kind, self.mode, self.uid, self.gid, self.mtime_ns, self.size,
                     self.rdev, self.xattrs, self.link))

    @property
    def st_mode(self) -> int:
        return _FMT[self.kind] | self.mode

    def without_link(self) -> Meta:
        return self.replace(link=None) if self.link is not None else self

    def format(self) -> str:
        sec, nsec = divmod(self.mtime_ns, 1_000_000_000)
        parts = [self.kind, f"{self.mode:04o}", f"{self.uid}:{self.gid}", f"{sec}.{nsec:09d}"]
        if self.kind == FILE:
            parts.append(f"size={self.size}")
        if self.rdev is not None:
            parts.append(f"rdev={self.rdev[0]},{self.rdev[1]}")
        parts.extend(f"x:{escape(k)}={escape(v)}" for k, v in self.xattrs)
        if self.link is not None:
            parts.append(f"link={escape(self.link)}")
        return " ".join(parts)

    @classmethod
    def parse(cls, fields: list[str]) -> Meta:
        kind, mode, owner, mtime, *extra = fields
        if kind not in _FMT:
            raise ValueError(f"unknown entry type {kind!r}")
        uid, gid = owner.split(":")
        sec, nsec = mtime.split(".")
        size, rdev, link = 0, None, None
        xattrs = []
        for item in extra:
            key, _, value = item.partition("=")
            if key == "size":
                size = int(value)
            elif key == "rdev":
                major, minor = value.split(",")
                rdev = (int(major), int(minor))
            elif key == "link":
                link = unescape(value)
            elif key.startswith("x:"):
                xattrs.append((unescape(key[2:]), unescape(value)))
            else:
                raise ValueError(f"unknown field {key!r}")
        return cls(
            kind=kind,
            mode=int(mode, 8),
            uid=int(uid),
            gid=int(gid),
            mtime_ns=int(sec) * 1_000_000_000 + int(nsec),
            size=size,
            rdev=rdev,
            xattrs=tuple(xattrs),
            link=link,
        )


def kind_of(st_mode: int) -> str:
    return _KIND_OF_FMT[stat.S_IFMT(st_mode)]


def format_record(own: Meta, children: dict[bytes, Meta]) -> bytes:
    """Serialise a directory's record; `children` holds its non-directory entries."""
    lines = [". " + own.format()]
    lines.extend(f"{_name_token(name)} {children[name].format()}" for name in sorted(children))
    return ("\n".join(lines) + "\n").encode("ascii")


def _name_token(name: bytes) -> str:
    # '.' names the directory itself; a child can only be called that in a
    # hostile archive, but it must not be mistaken for the directory.
    return "%2E" if name == b"." else escape(name)


def record_own(data: bytes) -> Meta:
    """The directory's own metadata from its record, reading only the first line."""
    end = data.find(b"\n")
    name, *fields = data[: end if end >= 0 else len(data)].decode("ascii").split(" ")
    if name != ".":
        raise ValueError("record has no '.' directory line")
    return Meta.parse(fields)


def record_entry(data: bytes, name: bytes) -> Meta | None:
    """One child's metadata from a record without parsing the other lines."""
    key = b"\n" + _name_token(name).encode("ascii") + b" "
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = data.find(b"\n", start)
    return Meta.parse(data[start : end if end >= 0 else len(data)].decode("ascii").split(" "))


def parse_record(data: bytes) -> tuple[Meta, dict[bytes, Meta]]:
    """Inverse of format_record()."""
    own: Meta | None = None
    children: dict[bytes, Meta] = {}
    for line in data.decode("ascii").splitlines():
        name, *fields = line.split(" ")
        n = len(fields)
        if n == 5 and fields[0] == FILE and fields[4][:5] == "size=" or (
                n == 4 and fields[0] in _FMT):
            # a plain file, directory or symlink (most lines): Meta.parse's own steps
            # for these shapes, without its loop over further fields
            uid, gid = fields[2].split(":")
            sec, nsec = fields[3].split(".")
            meta = Meta(fields[0], int(fields[1], 8), int(uid), int(gid),
                        int(sec) * 1_000_000_000 + int(nsec),
                        int(fields[4][5:]) if n == 5 else 0)
        else:
            meta = Meta.parse(fields)
        if name == ".":
            own = meta
        else:
            children[unescape(name)] = meta
    if own is None or own.kind != DIR:
        raise ValueError("record has no '.' directory line")
    return own, children


def meta_from_stat(st: os.stat_result, xattrs: tuple[tuple[bytes, bytes], ...]) -> Meta:
    kind = kind_of(st.st_mode)
    return Meta(
        kind=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        size=st.st_size if kind == FILE else 0,
        rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in DEVICE_KINDS else None,
        xattrs=xattrs,
    )
