"""Rootless vfs containers: what an unprivileged checkout could not put on disk.

Without root, a vfs checkout cannot chown (every entry belongs to the user),
cannot make device nodes (checkout leaves empty regular files as placeholders)
and cannot set trusted.* or security.* xattrs. Like umoci's rootless mode, the
store stays the truth: right after the checkout, the entries are compared with
the layer and what could not be applied is written to a *rootless map* in the
container's state dir:

    uid, gid       the owner the checkout left on disk (the user's, in practice)
    placeholders   path -> the store's kind, for device nodes checked out as
                   empty regular files
    xattrs         path -> names of the store's xattrs missing on disk
    modes          path -> the permission bits left on disk, where they differ

When changes are scanned, each observed entry is translated back into what the
store should record (`RootlessMap.faithful`), looking the path up in the
*current* base layer, so the map stays right after commits:

- uid/gid equal to the checkout's owner mean "whatever the base has here" for
  an entry of the same type as the base's (an edited file keeps 1000:1000; a
  rootless user cannot chown), and 0:0 for new entries (the user is root in
  the container's view, as with rootless podman). Other ids are kept as seen.
- an empty regular file at a placeholder's path is the base's device node
  (with the mode and mtime seen on disk); given content, it is a regular file.
- xattrs the checkout could not set (or set to another value) are the base's
  for an entry of the same type; permission bits still as the checkout left
  them are the base's.
- a written file (mtime not the base's) whose mode is the base's minus the
  setuid/setgid bits the kernel clears when an unprivileged owner writes keeps
  the base's mode (root in the container would have kept the bits); a plain
  `chmod u-s` does not touch the mtime and is recorded as such.

So an untouched entry equals the base (no false positives, even without the
stat cache), and a changed one keeps what the user could not have changed.
"""

from __future__ import annotations

import errno
import marshal
import os
import stat
from typing import TYPE_CHECKING, Any

from layerctl.atomic import write_file
from layerctl.beneath import read_xattrs
from layerctl.errors import Corrupt
from layerctl.record import Record
from layerctl.store.fstree import DirRef, walk
from layerctl.store.meta import FILE, SYMLINK, Meta, kind_of

if TYPE_CHECKING:
    from layerctl.store.repo import Store

MAP_NAME = "rootless"
_VERSION = 1


class RootlessMap(Record):
    """What a rootless checkout of the base could not apply (see the module doc)."""

    __slots__ = ("uid", "gid", "placeholders", "xattrs", "modes")

    def __init__(self, uid: int, gid: int, placeholders: dict[bytes, str] | None = None,
                 xattrs: dict[bytes, tuple[bytes, ...]] | None = None,
                 modes: dict[bytes, int] | None = None):
        self.uid = uid
        self.gid = gid
        self.placeholders = {} if placeholders is None else placeholders
        self.xattrs = {} if xattrs is None else xattrs
        self.modes = {} if modes is None else modes

    def faithful(self, path: bytes, meta: Meta, old: Meta | None) -> Meta:
        """`meta` as observed on disk at `path` -> what the store should record,
        given `old`, the base layer's entry at that path (None if it has none)."""
        if (old is not None and meta.kind == FILE and meta.size == 0
                and self.placeholders.get(path) == old.kind):
            meta = meta.replace(kind=old.kind, size=0, rdev=old.rdev)
        same = old if old is not None and old.kind == meta.kind else None
        changes: dict[str, Any] = {}
        if meta.uid == self.uid:
            changes["uid"] = same.uid if same else 0
        if meta.gid == self.gid:
            changes["gid"] = same.gid if same else 0
        if same:
            old = same
            disk_mode = self.modes.get(path)
            if disk_mode is not None and meta.mode == disk_mode:
                changes["mode"] = old.mode
            elif meta.kind == FILE and meta.mtime_ns != old.mtime_ns:
                # A write by an owner without CAP_FSETID clears setuid (and setgid with
                # group exec); root in the container would have kept them.
                killed = stat.S_ISUID | (stat.S_ISGID if old.mode & stat.S_IXGRP else 0)
                if old.mode & killed and meta.mode == old.mode & ~killed:
                    changes["mode"] = old.mode
            lost = self.xattrs.get(path)
            if lost:
                xattrs = dict(meta.xattrs)
                xattrs.update((n, v) for n, v in old.xattrs if n in lost)
                changes["xattrs"] = tuple(sorted(xattrs.items()))
        return meta.replace(**changes) if changes else meta


def needed() -> bool:
    """A checkout by this process cannot apply everything (not root)."""
    return os.geteuid() != 0


def record(store: Store, root: DirRef, top: bytes,
           seen: dict[bytes, os.stat_result]) -> RootlessMap:
    """Compare the layer `root` with its fresh checkout at `top` (`seen`: relative
    path -> lstat of every entry below it) and note what the checkout left different."""
    top_st = os.lstat(top)
    m = RootlessMap(top_st.st_uid, top_st.st_gid)
    for path, meta, _obj in walk(store, root):
        st = top_st if not path else seen.get(path)
        if st is None:
            continue
        disk_kind = kind_of(st.st_mode)
        if disk_kind != meta.kind:
            if disk_kind == FILE and st.st_size == 0:
                m.placeholders[path] = meta.kind
            continue
        if meta.kind != SYMLINK and stat.S_IMODE(st.st_mode) != meta.mode:
            m.modes[path] = stat.S_IMODE(st.st_mode)
        if meta.xattrs:
            real = top + b"/" + path if path else top
            try:
                have = dict(read_xattrs(real))
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EPERM):
                    raise
                have = {}
            lost = tuple(n for n, v in meta.xattrs if have.get(n) != v)
            if lost:
                m.xattrs[path] = lost
    return m


def _path(state: str) -> str:
    return os.path.join(state, MAP_NAME)


def save(state: str, m: RootlessMap) -> None:
    data = {"version": _VERSION, "uid": m.uid, "gid": m.gid, "placeholders": m.placeholders,
            "xattrs": m.xattrs, "modes": m.modes}
    write_file(_path(state), marshal.dumps(data))


def load(state: str) -> RootlessMap | None:
    """The container's rootless map, or None when its checkout applied everything."""
    try:
        with open(_path(state), "rb") as f:
            data = marshal.load(f)
    except FileNotFoundError:
        return None
    except (EOFError, ValueError, TypeError):
        data = None
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        # Without it every entry would look changed and a commit would record the
        # user's ids: refuse rather than guess.
        raise Corrupt(f"unreadable rootless map {_path(state)}; `layerctl reset` the "
                      "container to check it out again")
    return RootlessMap(data["uid"], data["gid"], data["placeholders"], data["xattrs"],
                       data["modes"])


def discard(state: str) -> None:
    try:
        os.unlink(_path(state))
    except FileNotFoundError:
        pass


__all__ = ["RootlessMap", "record", "load", "save", "discard", "needed"]
