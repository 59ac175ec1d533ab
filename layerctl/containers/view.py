"""The merged view of a container, read straight from its directories.

For overlay, the view is what the kernel shows in merged/, computed from the
upper dir (whiteouts: char device 0/0; opaque dirs: trusted.overlay.opaque=y)
over the lower dir, so it works mounted or not, and never follows a symlink
in the middle of a path (a container's symlinks point into the container, not
the host). For vfs, the view is the rootfs itself.
"""

from __future__ import annotations

import errno
import os
import stat

OPAQUE_XATTR = b"trusted.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: bytes) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.ENOENT, errno.ENOTDIR):
            return False
        raise


def _lstat(path: bytes) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def join(top: bytes, path: bytes) -> bytes:
    return top + b"/" + path if path else top


class _DirState:
    __slots__ = ("exists", "upper", "lower")

    def __init__(self, exists: bool, upper: bool, lower: bool) -> None:
        self.exists = exists  # the directory exists in the merged view
        self.upper = upper  # ... and is a directory in the upper dir
        self.lower = lower  # ... and its lower counterpart shows through


class View:
    """Resolves container paths (b"etc/hostname") to the file that holds them."""

    def __init__(self, upper: bytes, lower: bytes | None) -> None:
        self.upper = upper
        self.lower = lower
        self._dirs: dict[bytes, _DirState] = {b"": _DirState(True, True, lower is not None)}

    def forget(self) -> None:
        """Drop cached directory facts (after the tree changed)."""
        self._dirs = {b"": _DirState(True, True, self.lower is not None)}

    def _dir(self, path: bytes) -> _DirState:
        found = self._dirs.get(path)
        if found is not None:
            return found
        parent_path, _, name = path.rpartition(b"/")
        parent = self._dir(parent_path)
        state = _DirState(False, False, False)
        if parent.exists:
            upper_st = _lstat(join(self.upper, path)) if parent.upper else None
            if upper_st is not None:
                if stat.S_ISDIR(upper_st.st_mode):
                    lower = (
                        parent.lower
                        and self.lower is not None
                        and not is_opaque(join(self.upper, path))
                        and _isdir(join(self.lower, path))
                    )
                    state = _DirState(True, True, lower)
                # a whiteout or a non-directory hides everything below
            elif parent.lower and self.lower is not None and _isdir(join(self.lower, path)):
                state = _DirState(True, False, True)
        self._dirs[path] = state
        return state

    def resolve(self, path: bytes) -> tuple[bytes, os.stat_result] | None:
        """(real path, lstat) of a container path, or None if it does not exist."""
        if not path:
            return self.upper, os.lstat(self.upper)
        parent_path, _, name = path.rpartition(b"/")
        parent = self._dir(parent_path)
        if not parent.exists:
            return None
        if parent.upper:
            real = join(self.upper, path)
            st = _lstat(real)
            if st is not None:
                if self.lower is not None and is_whiteout(st):
                    return None
                return real, st
        if parent.lower:
            real = join(self.lower, path)
            st = _lstat(real)
            if st is not None:
                return real, st
        return None

    def is_dir(self, path: bytes) -> bool:
        return self._dir(path).exists

    def listdir(self, path: bytes) -> list[bytes]:
        state = self._dir(path)
        if not state.exists:
            return []
        names: set[bytes] = set()
        if state.lower:
            names.update(os.listdir(join(self.lower, path)))
        if state.upper:
            with os.scandir(join(self.upper, path)) as it:
                for entry in it:
                    if self.lower is not None and is_whiteout(entry.stat(follow_symlinks=False)):
                        names.discard(entry.name)
                        continue
                    names.add(entry.name)
        return sorted(names)

    def hides_lower(self, path: bytes) -> bool:
        """`path` is a directory of the upper dir through which no lower entry shows:
        opaque, re-created below an opaque directory, or where the lower has no
        directory. Every entry the base layer has below it is then gone unless
        the upper dir holds it again."""
        if self.lower is None:
            return False
        state = self._dir(path)
        return state.upper and not state.lower


def _isdir(path: bytes) -> bool:
    st = _lstat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)
