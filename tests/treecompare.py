"""Filesystem fidelity comparator for tests.

``snapshot(root)`` records everything layerctl promises to preserve about a
directory tree; ``compare(a, b)`` lists the differences between two trees (or
two snapshots) as human-readable lines, an empty list meaning "identical".

Paths are relative byte strings (the root itself is ``b"."``) so any name a
filesystem accepts, including non-UTF-8 bytes and newlines, works.  Symlinks
are never followed.  atime is never recorded.

Recorded per entry (``Entry`` fields, which are also the names accepted by
``ignore``):

    type      "file", "dir", "symlink", "fifo", "char", "block", "socket"
    mode      stat.S_IMODE (permission bits incl. setuid/setgid/sticky)
    uid, gid  numeric owner
    mtime     st_mtime_ns (also for the root and for symlinks)
    size      st_size for regular files and symlinks, None otherwise
              (directory sizes are filesystem-specific and not compared)
    sha256    hex digest of a regular file's content, None otherwise
    target    symlink target (bytes), None otherwise
    rdev      (major, minor) for char/block devices, None otherwise
    xattrs    sorted tuple of (name, value) pairs, read without following
              symlinks (names are str as os.listxattr returns them)
    hardlink  for a non-directory whose inode has another name inside the
              tree: the lexicographically smallest relative path of that
              inode's names (the same value for every member of the group);
              None otherwise
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace

__all__ = [
    "FIELDS",
    "ROOT",
    "Entry",
    "Snapshot",
    "assert_same_tree",
    "compare",
    "snapshot",
]

ROOT = b"."

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFSOCK: "socket",
}


@dataclass(frozen=True)
class Entry:
    """Everything recorded about one filesystem entry."""

    type: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int | None = None
    sha256: str | None = None
    target: bytes | None = None
    rdev: tuple[int, int] | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()
    hardlink: bytes | None = None


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Entry))

Snapshot = dict[bytes, Entry]


def _fspath_bytes(path: str | bytes | os.PathLike) -> bytes:
    return os.fsencode(os.fspath(path))


def _read_xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    out = []
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            # Removed between listxattr and getxattr: treat as absent.
            if e.errno == errno.ENODATA:
                continue
            raise
        out.append((name, value))
    return tuple(sorted(out))


def _sha256(path: bytes) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _entry(path: bytes, st: os.stat_result) -> Entry:
    fmt = stat.S_IFMT(st.st_mode)
    kind = _TYPES.get(fmt, f"unknown-{fmt:o}")
    size = sha = target = rdev = None
    if fmt == stat.S_IFREG:
        size = st.st_size
        sha = _sha256(path)
    elif fmt == stat.S_IFLNK:
        target = os.readlink(path)
        size = len(target)
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return Entry(
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime=st.st_mtime_ns,
        size=size,
        sha256=sha,
        target=target,
        rdev=rdev,
        xattrs=_read_xattrs(path),
    )


def snapshot(root: str | bytes | os.PathLike) -> Snapshot:
    """Record every entry under ``root`` (inclusive) keyed by relative byte path.

    The walk uses lstat only; symlinks (including a symlinked ``root``) are
    recorded as symlinks and never followed.  Mount points inside the tree are
    walked into like ordinary directories.
    """
    top = _fspath_bytes(root)
    result: Snapshot = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}

    def record(rel: bytes, full: bytes) -> os.stat_result:
        st = os.lstat(full)
        result[rel] = _entry(full, st)
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        return st

    st = record(ROOT, top)
    stack = [(b"", top)] if stat.S_ISDIR(st.st_mode) else []
    while stack:
        rel_dir, full_dir = stack.pop()
        with os.scandir(full_dir) as it:
            names = [e.name for e in it]
        for name in names:
            rel = rel_dir + name
            full = os.path.join(full_dir, name)
            st = record(rel, full)
            if stat.S_ISDIR(st.st_mode):
                stack.append((rel + b"/", full))

    for members in inodes.values():
        if len(members) > 1:
            leader = min(members)
            for m in members:
                result[m] = replace(result[m], hardlink=leader)
    return dict(sorted(result.items()))


def _show_path(p: bytes) -> str:
    """Path for messages: UTF-8 as is, undecodable bytes as \\xNN, controls escaped."""
    s = p.decode("utf-8", "surrogateescape")
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _show_value(name: str, v: object) -> str:
    if v is None:
        return "none"
    if name == "mode" and isinstance(v, int):
        return oct(v)
    if name == "hardlink" and isinstance(v, bytes):
        return _show_path(v)
    if name == "sha256" and isinstance(v, str):
        return v[:16]
    if name == "rdev" and isinstance(v, tuple):
        return f"{v[0]}:{v[1]}"
    return repr(v)


class _Ignore:
    """Parsed ``ignore`` set: ``FIELD`` everywhere or ``FIELD:GLOB`` on some paths.

    GLOB is an fnmatch pattern matched against the relative path (decoded with
    surrogateescape; ``*`` also matches ``/``), e.g. ``"mtime:."`` for the root
    only or ``"xattrs:usr/bin/*"``.  FIELD ``*`` ignores the matching paths
    entirely, including their presence.
    """

    def __init__(self, spec: Iterable[str]) -> None:
        if isinstance(spec, str):
            raise TypeError("ignore must be a set of strings, not a string")
        self.everywhere: set[str] = set()
        self.patterns: list[tuple[str, str]] = []
        for item in spec:
            field, sep, pattern = item.partition(":")
            if field != "*" and field not in FIELDS:
                raise ValueError(
                    f"unknown field {field!r} in ignore item {item!r}; "
                    f"known: {', '.join(FIELDS)}, *"
                )
            if sep:
                self.patterns.append((field, pattern))
            else:
                self.everywhere.add(field)

    def __call__(self, field: str, path: bytes) -> bool:
        if field in self.everywhere or "*" in self.everywhere:
            return True
        if not self.patterns:
            return False
        s = os.fsdecode(path)
        return any(f in (field, "*") and fnmatch.fnmatchcase(s, pat) for f, pat in self.patterns)


def _diff_entry(path: bytes, ea: Entry, eb: Entry, ignored: _Ignore) -> list[str]:
    where = _show_path(path)
    if ea.type != eb.type and not ignored("type", path):
        # Other fields are meaningless across types.
        return [f"{where}: type {ea.type} != {eb.type}"]
    out = []
    for name in FIELDS:
        if name == "type" or ignored(name, path):
            continue
        va, vb = getattr(ea, name), getattr(eb, name)
        if va == vb:
            continue
        if name == "xattrs":
            xa, xb = dict(va), dict(vb)
            for key in sorted(xa.keys() | xb.keys()):
                if key not in xb:
                    out.append(f"{where}: xattr {key} missing in b")
                elif key not in xa:
                    out.append(f"{where}: xattr {key} missing in a")
                elif xa[key] != xb[key]:
                    out.append(f"{where}: xattr {key} {xa[key]!r} != {xb[key]!r}")
        else:
            out.append(f"{where}: {name} {_show_value(name, va)} != {_show_value(name, vb)}")
    return out


def compare(
    a: str | bytes | os.PathLike | Mapping[bytes, Entry],
    b: str | bytes | os.PathLike | Mapping[bytes, Entry],
    ignore: Iterable[str] = frozenset(),
) -> list[str]:
    """Differences between two trees (paths) or snapshots; [] means identical.

    Lines look like ``missing in b: usr/bin/x``, ``missing in a: etc/new``,
    ``usr/bin/passwd: mode 0o4755 != 0o755``,
    ``etc: xattr user.k b'1' != b'2'``, sorted by path.

    ``ignore`` holds field names (see ``FIELDS``) to skip everywhere, or
    ``FIELD:GLOB`` to skip them on matching paths only (``"mtime:."`` = the
    root's mtime).  ``*`` as FIELD ignores matching paths completely.
    Unknown field names raise ValueError.
    """
    ignored = _Ignore(ignore)
    sa = a if isinstance(a, Mapping) else snapshot(a)
    sb = b if isinstance(b, Mapping) else snapshot(b)
    out: list[str] = []
    for path in sorted(sa.keys() | sb.keys()):
        if ignored("*", path):
            continue
        if path not in sb:
            out.append(f"missing in b: {_show_path(path)}")
        elif path not in sa:
            out.append(f"missing in a: {_show_path(path)}")
        else:
            out.extend(_diff_entry(path, sa[path], sb[path], ignored))
    return out


def assert_same_tree(
    a: str | bytes | os.PathLike | Mapping[bytes, Entry],
    b: str | bytes | os.PathLike | Mapping[bytes, Entry],
    ignore: Iterable[str] = frozenset(),
    limit: int = 50,
) -> None:
    """Raise AssertionError listing (up to ``limit``) differences, if any."""
    diffs = compare(a, b, ignore)
    if diffs:
        shown = "\n  ".join(diffs[:limit])
        more = f"\n  ... and {len(diffs) - limit} more" if len(diffs) > limit else ""
        raise AssertionError(f"{len(diffs)} difference(s):\n  {shown}{more}")
