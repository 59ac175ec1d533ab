"""Writing entries back into a container's tree: what `restore`, `reset`'s undo and
`stash apply` use to put the base's (or a snapshot's) entries where the container
changed them.

Every step goes through directory fds (beneath.Tree): a symlink a process in the
container made, or swaps in meanwhile, is never followed, so no host file is
removed, written, chmod-ed or hardlinked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.beneath import GONE, Changed, Tree, fd_path
from layerctl.errors import Conflict
from layerctl.store.checkout import apply_meta, create_entry
from layerctl.store.diff import ADDED, CHANGED, Change
from layerctl.store.fstree import Dir, read_dir, walk_key
from layerctl.store.meta import DIR, SYMLINK, Meta, meta_from_stat
from layerctl.words import path_text

from .changes import BaseTree, keep_xattr
from .drivers import driver_for
from .state import Container
from .worktree import under

if TYPE_CHECKING:
    from layerctl.store.repo import Store

    from .rootless import RootlessMap


@contextlib.contextmanager
def writing_back(store: Store, c: Container, act: str, acted: str) -> Iterator[Tree]:
    """The container's tree, writable, for putting entries back (restore, undo). Every
    step goes through directory fds: a symlink a process in it made (or swaps in
    meanwhile) is never followed, so no host file is removed, written, chmod-ed or
    hardlinked. An entry that changed or vanished meanwhile is one line naming `act`."""
    with driver_for(c).writable_root(store, c) as top:
        tree = Tree(os.fsencode(top))
        try:
            yield tree
        except Changed as e:
            raise Conflict(f"{path_text(os.fsencode(e.path))} changed while being {acted}; "
                           "try again") from None
        except OSError as e:
            if e.errno not in GONE:
                raise
            raise Conflict(f"cannot {act}: {e.strerror} under the container's "
                           "filesystem (a directory there changed); try again") from None
        finally:
            tree.close()


def settle_parents(tree: Tree, bt: BaseTree, plan: list[Change], discard: list[Change],
                   changes: list[Change], rmap: RootlessMap | None = None) -> None:
    """A parent whose only difference left is the mtime our restore caused gets the
    base's mtime back, when no other pending change is directly inside it."""
    gone = {ch.path for ch in discard}
    busy = {ch.path.rpartition(b"/")[0] for ch in changes if ch.path not in gone}
    parents = {ch.path.rpartition(b"/")[0] for ch in plan} - busy - gone
    for parent in sorted(parents, key=walk_key, reverse=True):
        entry = bt.entry(parent)
        st = tree.lstat(parent)
        if entry is None or entry[0].kind != DIR or st is None or not stat.S_ISDIR(st.st_mode):
            continue
        now = meta_from_stat(st, tree.xattrs(parent, keep_xattr))
        if rmap is not None:
            now = rmap.faithful(parent, now, entry[0])
        if now.replace(mtime_ns=entry[0].mtime_ns) == entry[0]:
            os.utime(fd_path(tree.dir_fd(parent)), ns=(entry[0].mtime_ns, entry[0].mtime_ns))


def meta_only_dir(ch: Change) -> bool:
    """A directory in both trees, with the same entries kept: only its own record
    is written back (after its children, which would change its times)."""
    return (ch.status == CHANGED and ch.old is not None and ch.new is not None
            and ch.old.kind == DIR and ch.new.kind == DIR and not ch.opaque)


def _parent_fd(tree: Tree, path: bytes) -> tuple[int, bytes]:
    """(fd of the real directory holding `path`, its name), refusing symlinks on the way."""
    try:
        return tree.parent(path)
    except OSError as e:
        if e.errno not in GONE:
            raise
        parent = path.rpartition(b"/")[0]
        raise Conflict(f"cannot restore {path_text(path)}: {path_text(parent)} is not a "
                       "directory") from None


def restore_entry(store: Store, bt: BaseTree, tree: Tree, ch: Change,
                  groups: GroupLinks | None = None) -> None:
    """Put the base's entry at `ch.path` back (or remove an added one). `groups`: how a
    recreated hardlink-group member finds a member holding the base file to link to
    (restore); without it, a member links to its group's first, which the caller
    guarantees is the base's (undo, stash)."""
    kept, name = _parent_fd(tree, ch.path)
    pfd = os.dup(kept)  # ours: the tree may close the fds it keeps while we recreate below
    try:
        faults.point("restore.before-write")
        parent_st = os.fstat(pfd)
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                tree.forget(ch.path)
                shutil.rmtree(name, dir_fd=pfd)  # fd-based: never follows a symlink inside
            else:
                os.unlink(name, dir_fd=pfd)
        if ch.status != ADDED:  # the base has the entry: it is put back
            entry, d = bt.entry(ch.path), bt.dir(ch.path)
            assert entry is not None
            meta, blob = entry
            if d is not None:
                _recreate_dir(store, bt, tree, pfd, name, ch.path, d, groups)
            else:
                assert blob is not None  # a non-directory's content
                _recreate(store, tree, pfd, name, ch.path, meta, blob, groups)
        # Put the parent's times back: discarding a change should not create another one.
        os.utime(fd_path(pfd), ns=(parent_st.st_atime_ns, parent_st.st_mtime_ns))
    finally:
        os.close(pfd)


class GroupLinks:
    """Hardlink groups during a restore: a recreated member links to a member that holds
    the base file (one this restore recreated, or one left untouched, or changed only
    in which group it is in), never to one whose file changed; with none, it is written
    fresh. Linking to an untouched member on overlay copies that member up alone, which
    splits it from the members still in the lower dir: those are linked to it too
    (overlay without `index=on` keeps no hardlinks across a copy-up)."""

    def __init__(self, groups: dict[bytes, list[bytes]], changes: dict[bytes, Change],
                 restored: list[bytes]) -> None:
        self.groups = groups  # first member -> all members (containers/links.py)
        self.changes = changes  # the pending changes by path
        self.restored = restored  # the paths this restore puts back
        self.done: set[bytes] = set()

    def _untouched(self, member: bytes) -> bool:
        if under(member, self.restored):
            return False
        ch = self.changes.get(member)
        return ch is None or (ch.old is not None and ch.new is not None
                              and ch.old_blob == ch.new_blob
                              and ch.old.without_link() == ch.new.without_link())

    def source(self, path: bytes, meta: Meta) -> tuple[bytes | None, list[bytes]]:
        """(the member `path` links to, untouched members to link to it as well)."""
        first = meta.link if meta.link is not None else path
        members = [m for m in self.groups.get(first, ()) if m != path]
        done = [m for m in members if m in self.done]
        if done:
            return done[0], []
        holding = [m for m in members if self._untouched(m)]
        return (holding[0], holding[1:]) if holding else (None, [])


def _recreate(store: Store, tree: Tree, pfd: int, name: bytes, path: bytes, meta: Meta,
              blob: bytes, groups: GroupLinks | None) -> None:
    if groups is not None:
        source, others = groups.source(path, meta)
        groups.done.add(path)
    else:
        source, others = meta.link, []
    if source is not None:
        first = tree.lstat(source)
        if first is not None and not stat.S_ISDIR(first.st_mode):
            # linkat without AT_SYMLINK_FOLLOW: links the entry itself, never a symlink's target
            src_fd, src_name = tree.parent(source)
            os.link(src_name, name, src_dir_fd=src_fd, dst_dir_fd=pfd, follow_symlinks=False)
            for member in others:
                _rejoin(tree, source, member)
            return
    create_entry(store, b"/proc/self/fd/%d/%s" % (pfd, name), meta.without_link(), blob,
                 os.geteuid() == 0)
    apply_meta_at(pfd, name, meta)


def _rejoin(tree: Tree, source: bytes, member: bytes) -> None:
    """Make `member` (a non-directory holding the base file) a link of `source` again,
    unless it is one already. If this is cut short, `member` is a pending deletion of a
    base file: nothing of the user's is lost, and restoring it links it back."""
    src, cur = tree.lstat(source), tree.lstat(member)
    if src is None or cur is None or stat.S_ISDIR(cur.st_mode) or (
            (src.st_dev, src.st_ino) == (cur.st_dev, cur.st_ino)):
        return
    kept, src_name = tree.parent(source)
    src_fd = os.dup(kept)  # the next Tree call may close the fds it keeps
    try:
        dst_fd, dst_name = tree.parent(member)
        parent_st = os.fstat(dst_fd)
        os.unlink(dst_name, dir_fd=dst_fd)
        faults.point("restore.rejoin")
        os.link(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd,
                follow_symlinks=False)
        os.utime(fd_path(dst_fd), ns=(parent_st.st_atime_ns, parent_st.st_mtime_ns))
    finally:
        os.close(src_fd)


def _drop_xattrs(path: bytes, wanted: set[bytes], as_root: bool) -> None:
    """Remove the xattrs layerctl records that `wanted` lacks (errors as apply_meta
    takes them: unprivileged, what may not be changed is left)."""
    try:
        names = os.listxattr(path, follow_symlinks=True)
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        return
    for name in names:
        raw = os.fsencode(name)
        if keep_xattr(raw) and raw not in wanted:
            try:
                os.removexattr(path, name, follow_symlinks=True)
            except OSError as e:
                if as_root or e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                    raise


def apply_meta_at(dir_fd: int, name: bytes | None, meta: Meta) -> None:
    """apply_meta on `name` in directory `dir_fd` (None: on that directory) through an
    fd of the entry checked to be of meta's kind, so a symlink swapped in meanwhile
    cannot redirect a chmod or chown to a host file."""
    as_root = os.geteuid() == 0
    if name is None:  # a directory kept in place: it may carry xattrs the base lacks
        path = fd_path(dir_fd)  # an O_PATH fd: its /proc link, followed, is the inode
        _drop_xattrs(path, {n for n, _v in meta.xattrs}, as_root)
        apply_meta(path, meta, as_root, follow=True)
        return
    if meta.kind == SYMLINK:  # lchown, lsetxattr, lutimes: none follows the link
        apply_meta(b"/proc/self/fd/%d/%s" % (dir_fd, name), meta, as_root)
        return
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):  # not what was just created there
            raise Changed(name)
        apply_meta(fd_path(fd), meta, as_root, follow=True)
    finally:
        os.close(fd)


def _recreate_dir(store: Store, bt: BaseTree, tree: Tree, pfd: int, name: bytes, path: bytes,
                  d: Dir, groups: GroupLinks | None) -> None:
    os.mkdir(name, 0o700, dir_fd=pfd)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        for child in d.names():
            sub = path + b"/" + child
            if child in d.dirs:
                _recreate_dir(store, bt, tree, fd, child, sub, read_dir(store, d.dirs[child]),
                              groups)
            else:
                meta, blob = d.files[child]
                _recreate(store, tree, fd, child, sub, meta, blob, groups)
        apply_meta_at(fd, None, d.own)
    finally:
        os.close(fd)
