"""The merged view of a container, read straight from its directories.

For overlay, the view is what the kernel shows in merged/, computed from the
upper dir (whiteouts: char device 0/0; opaque dirs: trusted.overlay.opaque=y)
over the lower dir, so it works mounted or not, and never follows a symlink
in the middle of a path (a container's symlinks point into the container, not
the host). For vfs, the view is the rootfs itself. Entries are looked up and
read through beneath.Tree (directory fds, O_NOFOLLOW), so a container that
swaps a directory for a symlink meanwhile cannot point a lookup at the host;
an entry that vanishes while looked at is simply absent.
"""

from __future__ import annotations

import errno
import os
import stat

from layerctl.beneath import GONE, Tree

OPAQUE_XATTR = b"trusted.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: bytes | int) -> bool:
    """`path` (or an open directory fd) is marked opaque."""
    try:
        if isinstance(path, int):
            return os.getxattr(path, OPAQUE_XATTR) == b"y"
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
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
    __slots__ = ("exists", "upper", "lowers")

    def __init__(self, exists: bool, upper: bool, lowers: tuple[int, ...]) -> None:
        self.exists = exists  # the directory exists in the merged view
        self.upper = upper  # ... and is a directory in the upper dir
        self.lowers = lowers  # ... and these lower dirs (indices, top first) show through

    @property
    def lower(self) -> bool:
        return bool(self.lowers)


class View:
    """Resolves container paths (b"etc/hostname") to the file that holds them.

    `lower` is one lower dir or a list of them, top first (a chain of layer
    dirs), merged as overlayfs does: a whiteout or a non-directory hides what is
    below it, a directory merges with the directories below until an opaque one.
    """

    def __init__(self, upper: bytes, lower: bytes | list[bytes] | None) -> None:
        self.upper = upper
        if lower is None:
            self.lowers: list[bytes] = []
        else:
            self.lowers = [lower] if isinstance(lower, bytes) else list(lower)
        self.lower = self.lowers[0] if self.lowers else None  # None: no lower at all
        self._all = tuple(range(len(self.lowers)))
        self._dirs: dict[bytes, _DirState] = {b"": _DirState(True, True, self._all)}
        self._trees: dict[bytes, Tree] = {}

    def forget(self) -> None:
        """Drop cached directory facts (after the tree changed)."""
        self._dirs = {b"": _DirState(True, True, self._all)}
        for tree in self._trees.values():
            tree.close()

    def tree(self, top: bytes) -> Tree:
        found = self._trees.get(top)
        if found is None:
            found = self._trees[top] = Tree(top)
        return found

    def tree_of(self, real: bytes) -> tuple[Tree, bytes]:
        """The Tree holding a real path resolve() gave, and the path inside it."""
        for top in (self.upper, *self.lowers):
            if real == top or real.startswith(top + b"/"):
                return self.tree(top), real[len(top) + 1:]
        raise ValueError(f"{real!r} is not in this view")

    def _dir(self, path: bytes) -> _DirState:
        found = self._dirs.get(path)
        if found is not None:
            return found
        parent_path, _, name = path.rpartition(b"/")
        parent = self._dir(parent_path)
        state = _DirState(False, False, ())
        if parent.exists:
            upper_st = _lstat(join(self.upper, path)) if parent.upper else None
            if upper_st is not None:
                if stat.S_ISDIR(upper_st.st_mode):
                    opaque = is_opaque(join(self.upper, path))
                    lowers = () if opaque else self._lower_dirs(parent.lowers, path)
                    state = _DirState(True, True, lowers)
                # a whiteout or a non-directory hides everything below
            else:
                lowers = self._lower_dirs(parent.lowers, path)
                if lowers:
                    state = _DirState(True, False, lowers)
        self._dirs[path] = state
        return state

    def _lower_dirs(self, candidates: tuple[int, ...], path: bytes) -> tuple[int, ...]:
        """The lower dirs (of `candidates`, top first) whose `path` merges into the
        view: directories down to the first opaque one, stopping at a whiteout or a
        non-directory."""
        out: list[int] = []
        for i in candidates:
            full = join(self.lowers[i], path)
            st = _lstat(full)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            out.append(i)
            if len(self.lowers) > 1 and is_opaque(full):
                break
        return tuple(out)

    def resolve(self, path: bytes) -> tuple[bytes, os.stat_result] | None:
        """(real path, lstat) of a container path, or None if it does not exist."""
        if not path:
            return self.upper, os.lstat(self.upper)
        parent_path, _, name = path.rpartition(b"/")
        parent = self._dir(parent_path)
        if not parent.exists:
            return None
        if parent.upper:
            st = self.tree(self.upper).lstat(path)
            if st is not None:
                if self.lower is not None and is_whiteout(st):
                    return None
                return join(self.upper, path), st
        for i in parent.lowers:
            top = self.lowers[i]
            st = self.tree(top).lstat(path)
            if st is not None:
                if is_whiteout(st) and len(self.lowers) > 1:
                    return None
                return join(top, path), st
        return None

    def is_dir(self, path: bytes) -> bool:
        return self._dir(path).exists

    def listdir(self, path: bytes) -> list[bytes]:
        state = self._dir(path)
        if not state.exists:
            return []
        names: set[bytes] = set()
        hidden: set[bytes] = set()
        layers = [(self.upper, self.lower is not None)] if state.upper else []
        layers += [(self.lowers[i], len(self.lowers) > 1) for i in state.lowers]
        for top, whiteouts in layers:
            tree = self.tree(top)
            try:
                found = tree.names(path)
            except OSError as e:
                if e.errno in GONE:
                    continue  # gone (or replaced) since the lookup
                raise
            for name, char in found:
                if name in hidden or name in names:
                    continue
                if whiteouts and char:
                    st = tree.lstat(path + b"/" + name if path else name)
                    if st is None:
                        continue  # vanished since the listing
                    if is_whiteout(st):
                        hidden.add(name)
                        continue
                names.add(name)
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
