"""Host-side access to a tree another party controls (a container's upper dir or
rootfs, an image's rootfs), as root, while that party may be changing it.

A path inside such a tree is never handed to the kernel to resolve from the
host: a process in the container can turn any directory on it into a symlink
to a host directory at any moment. Each path is walked one component at a
time from a directory fd, with O_NOFOLLOW on every step (what openat2's
RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS does in one call on newer kernels). A file
to read is first opened O_PATH (which never opens a FIFO or a device), its
fstat is checked against what the caller's scan saw, and only then is it
reopened for reading through /proc/self/fd. An entry that vanished or is no
longer the one the scan saw raises Changed: callers rescan it or report it,
they never crash or hang on it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator

from layerctl import faults

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Kept directory fds are O_PATH: a lookup needs search (x) permission only, as a
# path lookup does, not read permission (rootless: an image's 0311 directory).
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_MAX_DIR_FDS = 128  # directory fds a Tree keeps open (walk order reuses the last few)
# errnos meaning "not there, or not what a plain walk expects": a rescan decides
GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENXIO)


class Changed(Exception):
    """An entry vanished or is not the one a scan saw any more (changed again)."""

    def __init__(self, path: bytes | str) -> None:
        super().__init__(path)
        self.path = path  # as the caller named it (container path, host path)


def same_file(st: os.stat_result, expect: os.stat_result) -> bool:
    """`st` is the inode `expect` describes, with the same type, size and mtime."""
    return (st.st_ino == expect.st_ino and st.st_dev == expect.st_dev
            and stat.S_IFMT(st.st_mode) == stat.S_IFMT(expect.st_mode)
            and st.st_size == expect.st_size and st.st_mtime_ns == expect.st_mtime_ns)


def fd_path(fd: int) -> bytes:
    """/proc/self/fd/N: for calls that follow it, the very inode `fd` holds."""
    return b"/proc/self/fd/%d" % fd


def moved(fd: int, expect: os.stat_result) -> bool:
    """The open file's size or mtime is not what the scan saw: written meanwhile."""
    st = os.fstat(fd)
    return st.st_size != expect.st_size or st.st_mtime_ns != expect.st_mtime_ns


def _reopen(path_fd: int, flags: int) -> int:
    """An O_PATH fd reopened for I/O: the very inode it names, wherever it is now."""
    return os.open(f"/proc/self/fd/{path_fd}", flags)


class Tree:
    """Reads beneath `top` (a host path the caller trusts) without following any
    symlink inside it. Directory fds are kept (bounded) for the next lookups."""

    def __init__(self, top: bytes) -> None:
        self.top = top
        self._dirs: dict[bytes, int] = {}

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass

    def dir_fd(self, rel: bytes) -> int:
        """An O_PATH fd of directory `rel` (b"" is the top), kept by the Tree: for
        *at() calls and fd_path(); OSError if it is gone or not a directory (a
        symlink is not one). Valid until the next Tree call (which may close the
        kept fds to stay bounded): os.dup() it to hold it longer."""
        fd = self._dirs.get(rel)
        if fd is not None:
            return fd
        if not rel:
            fd = os.open(self.top, _DIR_PATH)
        else:
            parent, _, name = rel.rpartition(b"/")
            fd = os.open(name, _DIR_PATH, dir_fd=self.dir_fd(parent))
        if len(self._dirs) >= _MAX_DIR_FDS:
            self.close()
        self._dirs[rel] = fd
        return fd

    def parent(self, rel: bytes) -> tuple[int, bytes]:
        """(fd of the directory holding `rel`, its name there)."""
        parent, _, name = rel.rpartition(b"/")
        return self.dir_fd(parent), name

    def forget(self, rel: bytes) -> None:
        """Close the kept fds of directory `rel` and below (it was removed)."""
        for path in [p for p in self._dirs if p == rel or p.startswith(rel + b"/")]:
            os.close(self._dirs.pop(path))

    def lstat(self, rel: bytes) -> os.stat_result | None:
        """The entry's lstat, or None if it (or a directory on its way) is gone."""
        try:
            if not rel:
                return os.fstat(self.dir_fd(b""))
            fd, name = self.parent(rel)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError as e:
            if e.errno in GONE:
                return None
            raise

    def names(self, rel: bytes) -> list[tuple[bytes, bool]]:
        """(name, may be a device: neither directory, file nor symlink, so worth an
        lstat to tell a whiteout) of the entries of directory `rel`; OSError if it
        is gone or not a directory."""
        fd = _reopen(self.dir_fd(rel), _DIR & ~os.O_NOFOLLOW)
        try:
            with os.scandir(fd) as it:
                return [(os.fsencode(e.name), _special(e)) for e in it]
        finally:
            os.close(fd)

    def proc_path(self, rel: bytes) -> bytes:
        """A path naming `rel` through its parent's fd: safe for calls that do not
        follow the final symlink (lgetxattr, lchown, utimensat with nofollow)."""
        fd, name = self.parent(rel)
        return b"/proc/self/fd/%d/%s" % (fd, name)

    def open_path(self, rel: bytes, expect: os.stat_result | None = None) -> int:
        """An O_PATH fd of the entry (never follows it, never opens a device); with
        `expect`, Changed unless it is that same inode, size and mtime."""
        try:
            fd, name = self.parent(rel)
            pfd = os.open(name, _PATH, dir_fd=fd)
        except OSError as e:
            if e.errno in GONE:
                raise Changed(rel) from None
            raise
        if expect is not None and not same_file(os.fstat(pfd), expect):
            os.close(pfd)
            raise Changed(rel)
        return pfd

    def open_file(self, rel: bytes, expect: os.stat_result | None = None) -> int:
        """A read fd of the regular file `rel` (the inode `expect` describes, if
        given); Changed if it is gone, replaced or not a regular file now."""
        pfd = self.open_path(rel, expect)
        try:
            if expect is None and not stat.S_ISREG(os.fstat(pfd).st_mode):
                raise Changed(rel)
            if expect is not None and not stat.S_ISREG(expect.st_mode):
                raise Changed(rel)
            return _reopen(pfd, _READ)
        finally:
            os.close(pfd)

    def readlink(self, rel: bytes) -> bytes:
        """A symlink's target (read, never followed); Changed if it is not a symlink now."""
        try:
            fd, name = self.parent(rel)
            return os.readlink(name, dir_fd=fd)
        except OSError as e:
            if e.errno in (*GONE, errno.EINVAL):
                raise Changed(rel) from None
            raise

    def xattrs(self, rel: bytes, keep: Callable[[bytes], bool] | None = None
               ) -> tuple[tuple[bytes, bytes], ...]:
        """The entry's extended attributes (those `keep` accepts); Changed if it is gone."""

        try:
            if not rel:
                fd = _reopen(self.dir_fd(b""), _DIR & ~os.O_NOFOLLOW)
                try:
                    return read_xattrs(fd, keep)
                finally:
                    os.close(fd)
            return read_xattrs(self.proc_path(rel), keep)
        except OSError as e:
            if e.errno in GONE:
                raise Changed(rel) from None
            raise

    def read(self, rel: bytes, limit: int, expect: os.stat_result | None = None) -> bytes:
        """At most `limit` bytes of the regular file `rel` (a patch preview, a
        passwd file): Changed if it is not a regular file now."""
        fd = self.open_file(rel, expect)
        try:
            return read_fd(fd, limit)
        finally:
            os.close(fd)


def read_fd(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes from `fd` (short reads retried until EOF)."""
    parts = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_exact(fd: int, size: int, expect: os.stat_result | None, label: bytes | str) -> bytes:
    """All of a `size`-byte file from `fd`; Changed(label) if it holds more or
    fewer bytes, or (with `expect`, the scan's stat) was written while read."""
    data = read_fd(fd, size + 1)  # one byte more: a file that grew is caught
    if len(data) != size or (expect is not None and moved(fd, expect)):
        raise Changed(label)
    return data


def chunks_exact(fd: int, size: int, expect: os.stat_result | None, label: bytes | str,
                 chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """read_exact() for big files, in chunks: Changed(label) as soon as the file
    proves longer, or at the end if it was shorter or written while read."""
    seen = 0
    while chunk := os.read(fd, chunk_size):
        seen += len(chunk)
        if seen > size:
            raise Changed(label)
        yield chunk
    if seen != size or (expect is not None and moved(fd, expect)):
        raise Changed(label)


def walk(top: bytes) -> Iterator[tuple[bytes, os.stat_result, int | None]]:
    """(path relative to `top`, lstat, fd) of every entry below `top`,
    parents first, names sorted; fd is the open directory for directories (valid
    only until the next step) and None for the rest. Entries that vanish while
    walked are skipped; a directory is entered by fd, never through a symlink."""
    try:
        fd = os.open(top, _DIR)
    except OSError as e:
        if e.errno in GONE:
            return
        raise
    try:
        yield from _walk_fd(fd, b"")
    finally:
        os.close(fd)


def _walk_fd(fd: int, rel: bytes) -> Iterator[tuple[bytes, os.stat_result, int | None]]:
    try:
        with os.scandir(fd) as it:
            names = sorted(os.fsencode(e.name) for e in it)
    except OSError as e:
        if e.errno in GONE:
            return
        raise
    for name in names:
        path = rel + b"/" + name if rel else name
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError as e:
            if e.errno in GONE:
                continue
            raise
        if not stat.S_ISDIR(st.st_mode):
            yield path, st, None
            continue
        faults.point("walk.before-enter")
        try:
            sub = os.open(name, _DIR, dir_fd=fd)
        except OSError as e:
            if e.errno in GONE:
                continue  # replaced by a non-directory since the stat
            raise
        try:
            yield path, st, sub
            yield from _walk_fd(sub, path)
        finally:
            os.close(sub)


def _special(entry: os.DirEntry) -> bool:
    # d_type from the listing: no stat for the common kinds
    return not (entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False)
                or entry.is_symlink())


XattrFilter = Callable[[bytes], bool]


def read_xattrs(path: bytes | int, keep: XattrFilter | None = None
                ) -> tuple[tuple[bytes, bytes], ...]:
    """The entry's xattrs (never following a final symlink), or an open fd's."""
    follow = isinstance(path, int)  # an fd is the inode itself: nothing to follow
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    out = []
    for name in names:
        raw = os.fsencode(name)
        if keep is not None and not keep(raw):
            continue
        try:
            out.append((raw, os.getxattr(path, name, follow_symlinks=follow)))
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise
    return tuple(sorted(out))
