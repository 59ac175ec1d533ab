"""Layer trees -> a directory on disk, with every piece of metadata applied."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from layerctl.atomic import write_all
from layerctl.errors import BadInput, Corrupt, LayerctlError, is_no_space
from layerctl.store.fstree import Dir, DirRef, read_dir
from layerctl.store.meta import BLOCK, CHAR, DIR, FIFO, FILE, SOCKET, SYMLINK, Meta
from layerctl.store.validate import MAX_DEPTH, bad_name, show

if TYPE_CHECKING:
    from layerctl.store.types import TreeReader

Progress = Callable[[int, int], None]
_MKNOD_TYPE = {CHAR: stat.S_IFCHR, BLOCK: stat.S_IFBLK, FIFO: stat.S_IFIFO, SOCKET: stat.S_IFSOCK}


def apply_meta(path: bytes | int, meta: Meta, as_root: bool, follow: bool = False) -> None:
    """Set owner, xattrs, mode and mtime on an existing entry, in that order:
    chown drops security.capability and setuid, and every change bumps the mtime.
    `follow`: `path` is a /proc/self/fd/N link to the very inode (a checked fd), or
    that fd itself."""
    link = meta.kind == SYMLINK
    if as_root:
        os.chown(path, meta.uid, meta.gid, follow_symlinks=follow)
    for name, value in meta.xattrs:
        try:
            os.setxattr(path, name, value, follow_symlinks=follow)
        except OSError as e:
            if as_root or e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                raise
    if not link:
        os.chmod(path, meta.mode)
    os.utime(path, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=follow)


def create_entry(store: TreeReader, path: bytes, meta: Meta, blob: bytes, as_root: bool) -> None:
    """Create a non-directory entry with its content (no metadata yet)."""
    if meta.kind == FILE:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            write_all(fd, store.read_blob(blob))
        finally:
            os.close(fd)
    elif meta.kind == SYMLINK:
        os.symlink(store.read_blob(blob), path)
    else:
        make_node(path, meta, as_root)


def make_node(path: bytes, meta: Meta, as_root: bool) -> None:
    """Create a device or fifo (no metadata yet)."""
    if meta.kind not in _MKNOD_TYPE:
        raise BadInput(f"cannot create {os.fsdecode(path)}: unknown type {meta.kind}")
    rdev = os.makedev(*meta.rdev) if meta.rdev else 0
    try:
        os.mknod(path, 0o600 | _MKNOD_TYPE[meta.kind], rdev)
    except PermissionError:
        if as_root:
            raise
        # Unprivileged: a placeholder file; the store keeps the real entry.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class Checkout:
    """Materialises a layer's filesystem under `dest`.

    Defence in depth: fetch and fsck validate layers (layerctl.store.validate), but
    a bad object that slipped into the store must still not write outside `dest`:
    every name is a plain file name, every hardlink points at an entry this
    checkout wrote earlier, and nothing follows a symlink.
    """

    def __init__(self, store: TreeReader, progress: Progress | None = None) -> None:
        self.store = store
        self.progress = progress
        self.as_root = os.geteuid() == 0
        self._links: list[tuple[bytes, bytes]] = []
        self._dirs: list[tuple[bytes, Meta]] = []
        self._written: set[bytes] = set()  # relative paths of non-directories written

    def run(self, root: DirRef, dest: str | bytes) -> None:
        dest_b = os.fsencode(dest)
        if os.path.lexists(dest_b):
            if not os.path.isdir(dest_b) or os.path.islink(dest_b):
                raise LayerctlError(f"{os.fsdecode(dest_b)} exists and is not a directory")
            if os.listdir(dest_b):
                raise LayerctlError(f"{os.fsdecode(dest_b)} is not empty")
            made = False
        else:
            try:
                os.makedirs(dest_b)
            except OSError as e:
                raise BadInput(f"cannot create {os.fsdecode(dest_b)}: {e.strerror or e}") from None
            made = True
        try:
            d = read_dir(self.store, root)
            self._fill(dest_b, b"", d)
            self._dirs.append((dest_b, d.own))
            for path, target in self._links:
                # follow_symlinks=False: a link to a symlink links the symlink itself
                os.link(os.path.join(dest_b, target), path, follow_symlinks=False)
            for path, meta in reversed(self._dirs):  # children before parents
                apply_meta(path, meta, self.as_root)
        except Corrupt:  # a refused layer leaves nothing half written behind
            _discard(dest_b, made)
            raise
        except OSError as e:  # the target's filesystem refuses an entry (or is full)
            _discard(dest_b, made)
            if is_no_space(e):
                raise  # said once, naming the store, by the CLI
            where = os.fsdecode(e.filename) if e.filename else os.fsdecode(dest_b)
            raise BadInput(f"cannot check out {where}: {e.strerror or e}") from None

    def _fill(self, path: bytes, rel: bytes, d: Dir, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise Corrupt(f"refusing to check out {show(rel)}: directories nested too deep")
        for name in d.names():
            child_rel = rel + b"/" + name if rel else name
            problem = bad_name(name)
            if problem is None and name in d.dirs and name in d.files:
                problem = "both a directory and a file"
            if problem:
                raise Corrupt(f"refusing to check out {show(child_rel)}: {problem}")
            child = path + b"/" + name
            if name in d.dirs:
                sub = read_dir(self.store, d.dirs[name])
                os.mkdir(child, 0o700)
                self._dirs.append((child, sub.own))
                self._fill(child, child_rel, sub, depth + 1)
                continue
            meta, blob = d.files[name]
            if meta.link is not None:
                # only to an entry written above, by this checkout, inside dest
                if meta.link not in self._written:
                    raise Corrupt(
                        f"refusing to check out {show(child_rel)}: link={show(meta.link)} "
                        "is not an earlier file of the layer"
                    )
                self._links.append((child, meta.link))
                continue
            create_entry(self.store, child, meta, blob, self.as_root)
            apply_meta(child, meta, self.as_root)
            self._written.add(child_rel)


def _discard(dest: bytes, made: bool) -> None:
    """Remove what a failed checkout wrote (rmtree never follows symlinks)."""
    import shutil

    if made:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for name in os.listdir(dest):
        path = os.path.join(dest, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def checkout(
    store: TreeReader, root: DirRef, dest: str | bytes, progress: Progress | None = None
) -> None:
    """Write the filesystem `root` into the empty or missing directory `dest`."""
    Checkout(store, progress).run(root, dest)


__all__ = ["checkout", "apply_meta", "create_entry", "make_node", "DIR"]
