"""A container's pending changes: candidate paths in, store.diff.Change out.

The drivers name the paths that may differ from the base layer (overlay: the
upper dir's entries plus the paths of layers committed since the mount; vfs:
the entries whose stat differs from the stat cache). Each candidate is compared
with the base layer (looked up, never walked) so that a copy-up or a touch
with no real change is not reported. The result is what `store.diff` would
give between the base layer and a layer holding the container's filesystem.
"""

from __future__ import annotations

import marshal
import os
import stat
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.beneath import Changed, Tree, chunks_exact, read_exact
from layerctl.errors import Conflict
from layerctl.record import Record
from layerctl.store.diff import ADDED, CHANGED, DELETED, Change
from layerctl.store.fstree import EMPTY_BLOB, Dir, DirRef, read_dir, walk_key
from layerctl.store.meta import DIR, FILE, OVERLAY_PRIVATE, SYMLINK, Meta, meta_from_stat
from layerctl.store.objects import BIG_FILE, BLOB, object_id
from layerctl.words import path_text

from . import links as links_mod
from .rootless import RootlessMap
from .view import View

if TYPE_CHECKING:
    from layerctl.store.repo import Store

RACY_NS = 1_000_000_000  # a file changed this recently may change again within one tick


def keep_xattr(name: bytes) -> bool:
    return not name.startswith(OVERLAY_PRIVATE)


def observe(view: View, real: bytes, st: os.stat_result) -> Meta:
    """The entry's metadata, xattrs read beneath its tree; Changed if it is gone."""
    tree, rel = view.tree_of(real)
    return meta_from_stat(st, tree.xattrs(rel, keep_xattr))


class BaseTree:
    """Lookups in the base layer with the directories on looked-up paths memoised."""

    def __init__(self, store: Store, root: DirRef) -> None:
        self.store = store
        self.root = root
        self.root_dir = read_dir(store, root)
        self._dirs: dict[bytes, Dir | None] = {b"": self.root_dir}

    def dir(self, path: bytes) -> Dir | None:
        if path in self._dirs:
            return self._dirs[path]
        parent_path, _, name = path.rpartition(b"/")
        parent = self.dir(parent_path)
        found = None
        if parent is not None and name in parent.dirs:
            found = read_dir(self.store, parent.dirs[name])
        self._dirs[path] = found
        return found

    def entry(self, path: bytes) -> tuple[Meta, bytes | None] | None:
        """(meta, blob id; None for a directory) of `path`, or None if absent."""
        if not path:
            return self.root_dir.own, None
        parent_path, _, name = path.rpartition(b"/")
        parent = self.dir(parent_path)
        if parent is None:
            return None
        if name in parent.files:
            return parent.files[name]
        if name in parent.dirs:
            sub = self.dir(path)
            return (sub.own, None) if sub is not None else None
        return None


class HashCache:
    """Blob ids of files by stat, so an unchanged file is hashed once."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        # real path -> (inode, size, mtime, ctime, blob id)
        self.entries: dict[bytes, tuple[int, int, int, int, bytes]] = {}
        self.dirty = False
        if path:
            try:
                with open(path, "rb") as f:
                    self.entries = marshal.load(f)
            except (FileNotFoundError, EOFError, ValueError, TypeError):
                self.entries = {}

    def blob(self, view: View, real: bytes, st: os.stat_result) -> bytes:
        """The blob id of the file `real` that `st` describes; Changed if it is not
        that file any more (replaced, rewritten, gone)."""
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        found = self.entries.get(real)
        if found is not None and found[:4] == key:
            return found[4]
        tree, rel = view.tree_of(real)
        sha = hash_file(tree, rel, st)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            self.entries[real] = (*key, sha)
            self.dirty = True
        return sha

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        tmp = f"{self.path}.tmp.{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                marshal.dump(self.entries, f)
            os.rename(tmp, self.path)
        except OSError:
            pass  # a cache only
        self.dirty = False


def hash_file(tree: Tree, rel: bytes, st: os.stat_result) -> bytes:
    """The blob id of regular file `rel` of `tree`, read once from the inode `st`
    describes; Changed if it is another file now or was written while read."""
    import hashlib

    size = st.st_size
    fd = tree.open_file(rel, st)
    try:
        if size <= BIG_FILE:
            return object_id(BLOB, read_exact(fd, size, st, rel))
        h = hashlib.sha1(b"blob %d\0" % size)
        for chunk in chunks_exact(fd, size, st, rel):
            h.update(chunk)
        return h.digest()
    finally:
        os.close(fd)


class Observed(Record):
    __slots__ = ("real", "st", "meta")

    def __init__(self, real: bytes, st: os.stat_result, meta: Meta):
        self.real = real
        self.st = st
        self.meta = meta  # as the store would record it (rootless: translated); link not yet set


class Scan(Record):
    """The result of evaluating candidates."""

    __slots__ = ("changes", "root", "observed", "groups", "touched_groups")

    def __init__(self, changes: list[Change], root: Meta | None,
                 observed: dict[bytes, Observed], groups: dict[bytes, list[bytes]] | None,
                 touched_groups: set[bytes]):
        self.changes = changes
        self.root = root  # the merged root's metadata when it differs from the base root
        self.observed = observed
        self.groups = groups  # new hardlink groups (first -> members) if known
        self.touched_groups = touched_groups  # base groups (by first member) the changes touch


def scan(
    store: Store,
    base_root: DirRef,
    base_id: str,
    view: View,
    candidates: Iterable[bytes],
    hashes: HashCache,
    rootless: RootlessMap | None = None,
) -> Scan:
    """Compare each candidate path of the view with the base layer. With a rootless
    map, what is seen on disk is first translated into what the store records
    (ownership, device nodes and xattrs the user could not apply)."""
    base = BaseTree(store, base_root)
    cands = {p.strip(b"/") for p in candidates}
    cands.discard(b"")
    # A directory whose lower entries do not show through (opaque, re-created under an
    # opaque one) hides every base child: each is a candidate (deleted or re-created).
    todo = list(cands) if view.lower is not None else []
    while todo:
        p = todo.pop()
        d = base.dir(p)
        if d is not None and d.names() and view.hides_lower(p):
            for n in d.names():
                child = p + b"/" + n
                if child not in cands:
                    cands.add(child)
                    todo.append(child)
    observed: dict[bytes, Observed] = {}
    for p in cands:
        obs = _observe(view, base, rootless, p)
        if obs is not None:
            observed[p] = obs

    link_of, extra, touched, new_groups = _hardlinks(store, base_id, base, cands, observed, view)

    changes: list[Change] = []
    for p in sorted(cands, key=walk_key):
        old = base.entry(p)
        obs = observed.get(p)
        new_blob = None
        if obs is not None and obs.meta.kind != DIR:
            obs, new_blob = _content(view, base, rootless, p, obs, hashes)
            if obs is None:
                del observed[p]
            else:
                observed[p] = obs
        if obs is None:
            if old is None:
                continue
            parent = p.rpartition(b"/")[0]
            if view.is_dir(parent):
                changes.append(Change(p, DELETED, old=old[0], old_blob=old[1]))
            continue
        new_meta = obs.meta
        if new_meta.kind != DIR:
            new_meta = new_meta.replace(link=link_of.get(p))
        if old is None:
            changes.append(Change(p, ADDED, new=new_meta, new_blob=new_blob))
            continue
        old_meta, old_blob = old
        if old_meta.kind == DIR and new_meta.kind == DIR:
            opaque = _opaque(base, view, p)
            if old_meta != new_meta or opaque:
                changes.append(Change(p, CHANGED, old=old_meta, new=new_meta, opaque=opaque))
        elif old_meta != new_meta or old_blob != new_blob:
            changes.append(Change(p, CHANGED, old=old_meta, new=new_meta,
                                  old_blob=old_blob, new_blob=new_blob))
    for p, (old_meta, blob, link) in extra.items():
        changes.append(Change(p, CHANGED, old=old_meta, new=old_meta.replace(link=link),
                              old_blob=blob, new_blob=blob))
    changes.sort(key=lambda c: walk_key(c.path))

    root_meta = None
    found = view.resolve(b"")
    if found is not None:
        now = _faithful(rootless, base, b"", observe(view, *found))
        if now != base.root_dir.own:
            root_meta = now
    hashes.save()
    return Scan(changes, root_meta, observed, new_groups, touched)


def _faithful(rootless: RootlessMap | None, base: BaseTree, path: bytes, meta: Meta) -> Meta:
    if rootless is None:
        return meta
    old = base.entry(path)
    return rootless.faithful(path, meta, old[0] if old is not None else None)


def read_entry(view: View, real: bytes, st: os.stat_result, limit: int) -> bytes | None:
    """At most `limit` bytes of the regular file `real` of `view` (a symlink: its
    target) read beneath its tree from the inode `st` describes; None for other
    kinds. Changed if it is not that entry any more."""
    tree, rel = view.tree_of(real)
    if stat.S_ISLNK(st.st_mode):
        return tree.readlink(rel)
    if not stat.S_ISREG(st.st_mode):
        return None
    return tree.read(rel, limit, st)


def _observe(view: View, base: BaseTree, rootless: RootlessMap | None,
             path: bytes) -> Observed | None:
    """What is at `path` now, or None if nothing is; an entry that changes while
    observed (a busy container's temp file) is looked at once more, then absent."""
    for _attempt in range(2):
        found = view.resolve(path)
        if found is None:
            return None
        real, st = found
        faults.point("scan.after-lstat")
        try:
            return Observed(real, st, _faithful(rootless, base, path, observe(view, real, st)))
        except Changed:
            continue
    return None


def _content(view: View, base: BaseTree, rootless: RootlessMap | None, path: bytes,
             obs: Observed, hashes: HashCache) -> tuple[Observed | None, bytes | None]:
    """(what is at `path`, its blob id) for a non-directory, looked at once more if
    it changed since observed: (None, None) if it is gone by then, Conflict if it
    changed again."""
    try:
        return obs, _blob(view, obs, hashes)
    except Changed:
        pass
    again = _observe(view, base, rootless, path)
    if again is None or again.meta.kind == DIR:
        return again, None
    try:
        return again, _blob(view, again, hashes)
    except Changed:
        raise Conflict(f"{path_text(path)} keeps changing while being read; "
                       "try again") from None


def _blob(view: View, obs: Observed, hashes: HashCache) -> bytes:
    kind = obs.meta.kind
    if kind == FILE:
        faults.point("scan.before-hash")
        return hashes.blob(view, obs.real, obs.st)
    if kind == SYMLINK:
        tree, rel = view.tree_of(obs.real)
        return object_id(BLOB, tree.readlink(rel))
    return EMPTY_BLOB


def _opaque(base: BaseTree, view: View, path: bytes) -> bool:
    """As store.diff defines it: the old directory had entries, none is left, and it
    holds new ones."""
    d = base.dir(path)
    if d is None or not d.names():
        return False
    gone = all(view.resolve(path + b"/" + n) is None for n in d.names())
    return gone and bool(view.listdir(path))


_Relinked = tuple[Meta, bytes | None, bytes | None]  # (old meta, blob, new link)


def _hardlinks(
    store: Store,
    base_id: str,
    base: BaseTree,
    cands: set[bytes],
    observed: dict[bytes, Observed],
    view: View,
) -> tuple[dict[bytes, bytes | None], dict[bytes, _Relinked], set[bytes],
           dict[bytes, list[bytes]] | None]:
    """Canonical Meta.link for the candidates (first member in walk order carries
    None, later ones the first's path), plus the base hardlinks that change
    because a group lost or gained members: path -> (old meta, blob, new link)."""
    groups = links_mod.load(store, base_id, base.root)
    touched: set[bytes] = set()
    if groups:
        for first, members in groups.items():
            for m in members:
                parts = m.split(b"/")
                if any(b"/".join(parts[:i]) in cands for i in range(1, len(parts) + 1)):
                    touched.add(first)
                    break
    by_key: dict[tuple[int, int], list[bytes]] = {}
    for p, obs in observed.items():
        if obs.meta.kind != DIR and obs.st.st_nlink > 1:
            by_key.setdefault((obs.st.st_dev, obs.st.st_ino), []).append(p)
    survivors: dict[bytes, tuple[Meta, bytes]] = {}
    for first in touched:
        for m in groups[first]:
            if m in cands:
                continue
            found = view.resolve(m)
            entry = base.entry(m)
            if found is None or entry is None or found[1].st_nlink < 2:
                continue
            survivors[m] = entry  # type: ignore[assignment]
            by_key.setdefault((found[1].st_dev, found[1].st_ino), []).append(m)
    link_of: dict[bytes, bytes | None] = {}
    extra: dict[bytes, _Relinked] = {}
    new_groups: dict[bytes, list[bytes]] = {}
    for members in by_key.values():
        members.sort(key=walk_key)
        first = members[0]
        if len(members) > 1:
            new_groups[first] = members
        for m in members:
            link = None if m == first else first
            if m in survivors:
                old_meta, blob = survivors[m]
                if old_meta.link != link:
                    extra[m] = (old_meta, blob, link)
            else:
                link_of[m] = link
    result_groups = {f: ms for f, ms in groups.items() if f not in touched}
    result_groups.update(new_groups)
    return link_of, extra, touched, result_groups
