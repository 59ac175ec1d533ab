"""Layer trees -> a directory on disk, with every piece of metadata applied."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from layerctl.errors import BadInput, LayerctlError
from layerctl.store.fstree import Dir, DirRef, read_dir
from layerctl.store.meta import BLOCK, CHAR, DIR, FIFO, FILE, SOCKET, SYMLINK, Meta

Progress = Callable[[int, int], None]
_MKNOD_TYPE = {CHAR: stat.S_IFCHR, BLOCK: stat.S_IFBLK, FIFO: stat.S_IFIFO, SOCKET: stat.S_IFSOCK}


def apply_meta(path: bytes, meta: Meta, as_root: bool, follow: bool = False) -> None:
    """Set owner, xattrs, mode and mtime on an existing entry, in that order:
    chown drops security.capability and setuid, and every change bumps the mtime.
    `follow`: `path` is a /proc/self/fd/N link to the very inode (a checked fd)."""
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


def create_entry(store: object, path: bytes, meta: Meta, blob: bytes, as_root: bool) -> None:
    """Create a non-directory entry with its content (no metadata yet)."""
    if meta.kind == FILE:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            data = store.read_blob(blob)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    elif meta.kind == SYMLINK:
        os.symlink(store.read_blob(blob), path)
    elif meta.kind in _MKNOD_TYPE:
        rdev = os.makedev(*meta.rdev) if meta.rdev else 0
        try:
            os.mknod(path, 0o600 | _MKNOD_TYPE[meta.kind], rdev)
        except PermissionError:
            if as_root:
                raise
            # Unprivileged: a placeholder file; the store keeps the real entry.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    else:
        raise BadInput(f"cannot create {os.fsdecode(path)}: unknown type {meta.kind}")


class Checkout:
    """Materialises a layer's filesystem under `dest`."""

    def __init__(self, store: object, progress: Progress | None = None) -> None:
        self.store = store
        self.progress = progress
        self.as_root = os.geteuid() == 0
        self._links: list[tuple[bytes, bytes]] = []
        self._dirs: list[tuple[bytes, Meta]] = []

    def run(self, root: DirRef, dest: str | bytes) -> None:
        dest_b = os.fsencode(dest)
        if os.path.lexists(dest_b):
            if not os.path.isdir(dest_b) or os.path.islink(dest_b):
                raise LayerctlError(f"{os.fsdecode(dest_b)} exists and is not a directory")
            if os.listdir(dest_b):
                raise LayerctlError(f"{os.fsdecode(dest_b)} is not empty")
        else:
            os.makedirs(dest_b)
        d = read_dir(self.store, root)
        self._fill(dest_b, d)
        self._dirs.append((dest_b, d.own))
        for path, target in self._links:
            os.link(os.path.join(dest_b, target), path)
        for path, meta in reversed(self._dirs):  # children before parents
            apply_meta(path, meta, self.as_root)

    def _fill(self, path: bytes, d: Dir) -> None:
        for name in d.names():
            child = os.path.join(path, name)
            if name in d.dirs:
                sub = read_dir(self.store, d.dirs[name])
                os.mkdir(child, 0o700)
                self._dirs.append((child, sub.own))
                self._fill(child, sub)
                continue
            meta, blob = d.files[name]
            if meta.link is not None:
                self._links.append((child, meta.link))
                continue
            create_entry(self.store, child, meta, blob, self.as_root)
            apply_meta(child, meta, self.as_root)


def checkout(
    store: object, root: DirRef, dest: str | bytes, progress: Progress | None = None
) -> None:
    """Write the filesystem `root` into the empty or missing directory `dest`."""
    Checkout(store, progress).run(root, dest)


__all__ = ["checkout", "apply_meta", "create_entry", "DIR"]
