"""How one entry of a layer dir is written (layerbuild.py's writers): a file with
its content and metadata through one fd, a symlink, a device node; and what a file
created here gets by itself, so that most files need no chown or chmod.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING

from layerctl.atomic import write_all
from layerctl.store.checkout import apply_meta, make_node

if TYPE_CHECKING:
    from layerctl.store.meta import Meta

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_path(path: bytes) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_symlink(path: bytes, meta: Meta, target: bytes, as_root: bool) -> None:
    os.symlink(target, path)
    apply_meta(path, meta, as_root)


def write_node(path: bytes, meta: Meta, as_root: bool) -> None:
    make_node(path, meta, as_root)  # a device or fifo
    apply_meta(path, meta, as_root)


def write_file(path: bytes, meta: Meta, chunks: Iterable[bytes], as_root: bool,
               made: tuple[int, int, int] | None) -> None:
    """A regular file with its content, then its metadata through the same fd
    (apply_meta's order and rules, without a path lookup per call). `made`: the
    (uid, gid, umask) a new file gets here; a file they give its owner and mode, with
    no xattr, is created with that mode and only gets its mtime after (most files:
    two system calls fewer)."""
    plain = (made is not None and not meta.xattrs and (meta.uid, meta.gid) == made[:2]
             and meta.mode & 0o7777 == meta.mode & 0o777 & ~made[2])
    fd = os.open(path, CREATE, meta.mode & 0o777 if plain else 0o600)
    try:
        for data in chunks:
            write_all(fd, data)
        if plain:
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        else:
            apply_meta(fd, meta, as_root, follow=True)
    finally:
        os.close(fd)


def set_dir_metas(dirs: Iterable[tuple[bytes, Meta]], as_root: bool) -> None:
    """Directories' metadata (absolute paths), deepest first: creating an entry in a
    directory changes its mtime, so each is set once nothing more is written in it."""
    for path, meta in sorted(dirs, key=lambda d: d[0].count(b"/"), reverse=True):
        apply_meta(path, meta, as_root)


def made_here(dest: bytes) -> tuple[int, int, int] | None:
    """(uid, gid, umask) of a file created below `dest` by this process, when they are
    known: root, no set-group-id directory above (whose group a new file would take)."""
    if os.geteuid() != 0:
        return None
    try:
        if os.stat(dest).st_mode & stat.S_ISGID:
            return None
        with open("/proc/self/status", "rb") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith(b"Umask:"))
    except (OSError, StopIteration, ValueError):
        return None
    return 0, os.getegid(), umask
