"""Browsing a layer's filesystem, dive style: each entry annotated against the layer
below (added, changed, deleted, unchanged), loaded one directory at a time.

Two sources share one interface:

- `LayerBrowser`: a layer's tree against its parent's tree (both in the store).
- `PendingBrowser`: a container's base layer with its pending changes on top
  (new content is read from the container's directories, not the store).

Nothing here walks a whole image to list a directory: `children()` reads the two
directories at that path (memoised), so a 100k-entry image opens as fast as a
small one. Directory sizes and searches walk, and are meant for a worker thread.
The front ends (CLI, TUI) only render what this module returns.

What a preview shows for an entry (text head, binary words, metadata line) is in
layerctl/presentation/preview.py; this module picks what to read for it.
"""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from layerctl.patch import render_patch
from layerctl.presentation.preview import PREVIEW_BYTES, Preview, describe_meta, file_preview
from layerctl.store.blobstream import read_head
from layerctl.store.diff import ADDED, CHANGED, DELETED, Change
from layerctl.store.fstree import RECORD, Dir, DirRef, read_dir
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta
from layerctl.words import path_text, quote_name

if TYPE_CHECKING:
    from layerctl.store.repo import Store

UNCHANGED = ""
ALL_KINDS = frozenset({ADDED, CHANGED, DELETED, UNCHANGED})
CHANGE_KINDS = frozenset({ADDED, CHANGED, DELETED})

BY_NAME, BY_SIZE = "name", "size"


@dataclass(frozen=True)
class Entry:
    """One filesystem entry of the browsed layer, with its status against the one below.

    For a deleted entry `meta`/`blob`/`ref` describe what was there before.
    """

    path: bytes
    status: str  # A, C, D or "" (unchanged)
    meta: Meta
    old: Meta | None = None
    blob: bytes | None = None
    old_blob: bytes | None = None
    ref: DirRef | None = None  # a directory's tree on its side (new, or old if deleted)
    old_ref: DirRef | None = None
    dirty: bool = False  # a directory with changes somewhere below it
    change: Change | None = field(default=None, compare=False)

    @property
    def name(self) -> bytes:
        return self.path.rpartition(b"/")[2]

    @property
    def name_text(self) -> str:
        return quote_name(self.name)

    @property
    def path_text(self) -> str:
        return path_text(self.path)

    @property
    def is_dir(self) -> bool:
        return self.meta.kind == DIR

    @property
    def mode_text(self) -> str:
        """ls -l's permission column: drwxr-xr-x, -rwsr-xr-x."""
        return stat.filemode(self.meta.st_mode)

    @property
    def owner_text(self) -> str:
        return f"{self.meta.uid}:{self.meta.gid}"

    def as_change(self) -> Change | None:
        """The Change this entry stands for (None when unchanged)."""
        if self.change is not None:
            return self.change
        if self.status == UNCHANGED:
            return None
        if self.status == ADDED:
            return Change(self.path, ADDED, new=self.meta, new_blob=self.blob)
        if self.status == DELETED:
            return Change(self.path, DELETED, old=self.meta, old_blob=self.blob)
        return Change(self.path, CHANGED, old=self.old, new=self.meta,
                      old_blob=self.old_blob, new_blob=self.blob)


def _sort_key(by: str, sizes: dict[bytes, int]) -> Callable[[Entry], tuple]:
    if by == BY_SIZE:
        return lambda e: (-sizes.get(e.path, e.meta.size), e.name)
    return lambda e: (not e.is_dir, e.name)


class _Base:
    """What both browsers share: filtering, sorting, sizes, search, preview."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.RLock()  # listings may be asked for from several workers
        self._size_memo: dict[bytes, int] = {}

    # -- listing ----------------------------------------------------------------

    def _entries(self, path: bytes) -> list[Entry]:  # pragma: no cover - abstract
        raise NotImplementedError

    def children(
        self,
        path: bytes = b"",
        kinds: Iterable[str] = ALL_KINDS,
        sort: str = BY_NAME,
    ) -> list[Entry]:
        """The entries directly in `path` whose status is in `kinds` ("" = unchanged),
        plus directories with such changes below them."""
        kinds = frozenset(kinds)
        with self._lock:
            entries = self._entries(path.strip(b"/"))
        shown = [e for e in entries if e.status in kinds or (e.dirty and kinds & CHANGE_KINDS)]
        sizes = {e.path: self.size(e) for e in shown if e.is_dir} if sort == BY_SIZE else {}
        return sorted(shown, key=_sort_key(sort, sizes))

    def entry(self, path: bytes) -> Entry | None:
        """The entry at `path` (b"" is the root: reported as an unchanged directory)."""
        path = path.strip(b"/")
        if not path:
            return None
        parent, _, name = path.rpartition(b"/")
        for e in self.children(parent):
            if e.name == name:
                return e
        return None

    def size(self, e: Entry) -> int:
        """A file's size, or the total size of the files under a directory (memoised by
        tree id, so shared subtrees are summed once)."""
        if not e.is_dir:
            return e.meta.size
        if e.ref is None:
            return self._dir_size_pending(e)
        with self._lock:
            return self._tree_size(e.ref)

    def _dir_size_pending(self, e: Entry) -> int:
        return sum(self.size(c) for c in self.children(e.path) if c.status != DELETED)

    def _tree_size(self, ref: DirRef) -> int:
        key = ref.rootfs
        found = self._size_memo.get(key)
        if found is not None:
            return found
        d = read_dir(self.store, ref)
        total = sum(meta.size for meta, _ in d.files.values() if meta.kind == FILE)
        total += sum(self._tree_size(sub) for sub in d.dirs.values())
        self._size_memo[key] = total
        return total

    def counts(self, path: bytes = b"") -> dict[str, int]:
        """How many entries directly in `path` have each status."""
        out = {ADDED: 0, CHANGED: 0, DELETED: 0, UNCHANGED: 0}
        for e in self.children(path):
            out[e.status] += 1
        return out

    def search(
        self,
        text: str,
        kinds: Iterable[str] = ALL_KINDS,
        limit: int = 1000,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[Entry]:
        """Entries whose name contains `text` (case-insensitive), breadth first, at most
        `limit`; walks, so run it in a worker and pass `cancelled` to stop early."""
        needle = text.lower()
        kinds = frozenset(kinds)
        queue = [b""]
        found = 0
        while queue and found < limit:
            if cancelled():
                return
            path = queue.pop(0)
            for e in self.children(path, kinds):
                if needle in e.name_text.lower() and e.status in kinds:
                    yield e
                    found += 1
                    if found >= limit:
                        return
                if e.is_dir:
                    queue.append(e.path)

    # -- content ----------------------------------------------------------------

    def read_new(self, e: Entry, limit: int) -> bytes:  # pragma: no cover - abstract
        """At most `limit` bytes of the entry's content on the new side."""
        raise NotImplementedError

    def read_old(self, e: Entry, limit: int) -> bytes:
        return read_head(self.store, e.old_blob if e.status != DELETED else e.blob, limit)

    def preview(self, e: Entry, diff: bool = False) -> Preview:
        """A file's content, or (diff=True) its change against the layer below; binaries,
        directories, devices and metadata-only changes described in words."""
        with self._lock:
            if diff:
                return self._diff_preview(e)
            return self._content_preview(e)

    def _content_preview(self, e: Entry) -> Preview:
        title = e.path_text
        if e.status == DELETED:
            title += " (deleted in this layer)"
        kind = e.meta.kind
        if kind == DIR:
            n = len(self.children(e.path))
            return Preview("directory", title, f"{describe_meta(e.meta)}; {n} entries")
        if kind == SYMLINK:
            target = quote_name(self._read(e, PREVIEW_BYTES))
            return Preview("info", title, f"symbolic link → {target}")
        if kind != FILE:
            return Preview("info", title, describe_meta(e.meta))
        data = self._read(e, PREVIEW_BYTES + 1)  # one more tells whether it was cut
        return file_preview(title, data, e.meta, e.name_text)

    def _read(self, e: Entry, limit: int) -> bytes:
        return self.read_old(e, limit) if e.status == DELETED else self.read_new(e, limit)

    def _diff_preview(self, e: Entry) -> Preview:
        title = f"{e.path_text} against the layer below"
        change = e.as_change()
        if change is None:
            return Preview("info", title, "unchanged in this layer")
        if e.is_dir and change.status != CHANGED:
            word = "added" if change.status == ADDED else "deleted"
            return Preview("info", title, f"directory {word}: {describe_meta(e.meta)}")

        lines = render_patch(change, self.store, lambda limit: self.read_new(e, limit))
        truncated = len(lines) > 5000
        text = "\n".join(lines[:5000])
        if len(lines) <= 1 or (change.status == CHANGED and not change.content_changed):
            words = ", ".join(change.details()) or "no visible difference"
            return Preview("info", title, f"metadata only: {words}")
        return Preview("diff", title, text, syntax_hint="diff", truncated=truncated)


class LayerBrowser(_Base):
    """A layer's filesystem (`new`) annotated against its parent's (`old`, None for a
    base layer: everything is added)."""

    def __init__(self, store: Store, new: DirRef, old: DirRef | None) -> None:
        super().__init__(store)
        self.new = new
        self.old = old
        self._dirs: dict[tuple[int, bytes], Dir | None] = {}
        self._own_memo: dict[DirRef, Meta] = {}

    @classmethod
    def for_layer(cls, store: Store, layer_id: str) -> LayerBrowser:
        from layerctl.store.layers import read_layer

        layer = read_layer(store, layer_id)
        parent = read_layer(store, layer.parent).root if layer.parent else None
        return cls(store, layer.root, parent)

    def _dir(self, side: int, path: bytes) -> Dir | None:
        key = (side, path)
        if key in self._dirs:
            return self._dirs[key]
        root = self.new if side == 1 else self.old
        found: Dir | None = None
        if root is not None:
            if not path:
                found = read_dir(self.store, root)
            else:
                parent_path, _, name = path.rpartition(b"/")
                parent = self._dir(side, parent_path)
                if parent is not None and name in parent.dirs:
                    found = read_dir(self.store, parent.dirs[name])
        self._dirs[key] = found
        return found

    def _own(self, ref: DirRef) -> Meta:
        """A subdirectory's own metadata: the first line of its record, so listing a
        directory never parses its subdirectories' (possibly huge) records."""
        found = self._own_memo.get(ref)
        if found is None:
            found = own_meta(self.store, ref)
            self._own_memo[ref] = found
        return found

    def _entries(self, path: bytes) -> list[Entry]:
        new, old = self._dir(1, path), self._dir(0, path)
        out = []
        names = set(new.names() if new else ()) | set(old.names() if old else ())
        for name in names:
            p = path + b"/" + name if path else name
            in_new = new is not None and (name in new.files or name in new.dirs)
            in_old = old is not None and (name in old.files or name in old.dirs)
            if in_new and not in_old:
                meta, blob, ref = _side(self, 1, new, name, p)
                out.append(Entry(p, ADDED, meta, blob=blob, ref=ref, dirty=ref is not None))
            elif in_old and not in_new:
                meta, blob, ref = _side(self, 0, old, name, p)
                out.append(Entry(p, DELETED, meta, blob=blob, ref=ref, dirty=ref is not None))
            elif name in new.dirs and name in old.dirs:
                nref, oref = new.dirs[name], old.dirs[name]
                nmeta = self._own(nref)
                if nref == oref:
                    out.append(Entry(p, UNCHANGED, nmeta, ref=nref))
                    continue
                ometa = self._own(oref)
                status = CHANGED if nmeta != ometa else UNCHANGED
                out.append(Entry(p, status, nmeta, old=ometa, ref=nref, old_ref=oref, dirty=True))
            else:
                nmeta, nblob, nref = _side(self, 1, new, name, p)
                ometa, oblob, oref = _side(self, 0, old, name, p)
                same = nmeta == ometa and nblob == oblob and nref is None and oref is None
                out.append(Entry(p, UNCHANGED if same else CHANGED, nmeta, old=ometa, blob=nblob,
                                 old_blob=oblob, ref=nref, old_ref=oref, dirty=nref is not None))
        return out

    def read_new(self, e: Entry, limit: int) -> bytes:
        return read_head(self.store, e.blob, limit)


def _side(b: LayerBrowser, side: int, d: Dir, name: bytes, path: bytes) -> tuple:
    if name in d.dirs:
        return b._own(d.dirs[name]), None, d.dirs[name]
    meta, blob = d.files[name]
    return meta, blob, None


class PendingBrowser(_Base):
    """A container's pending filesystem: its base layer with `changes` on top.

    `read_pending(path, limit)` returns the current bytes of a file (or symlink
    target) in the container, at most `limit`; the base side comes from the store.
    """

    def __init__(
        self,
        store: Store,
        base: DirRef,
        changes: Iterable[Change],
        read_pending: Callable[[bytes, int], bytes],
    ) -> None:
        super().__init__(store)
        self.base = LayerBrowser(store, base, base)  # the base as-is, every entry unchanged
        self.read_pending = read_pending
        self._by_parent: dict[bytes, dict[bytes, Change]] = {}
        self._dirty: set[bytes] = set()
        for ch in changes:
            parent, _, name = ch.path.rpartition(b"/")
            self._by_parent.setdefault(parent, {})[name] = ch
            while parent and parent not in self._dirty:
                self._dirty.add(parent)
                parent = parent.rpartition(b"/")[0]
            self._dirty.add(b"")

    @classmethod
    def for_container(cls, store: Store, ref: str, changes: list[Change] | None = None
                      ) -> PendingBrowser:
        """The pending filesystem of container `ref` (its changes scanned unless given)."""
        from layerctl.containers.state import base, resolve
        from layerctl.containers.worktree import pending, view_of
        from layerctl.store.layers import read_layer

        c = resolve(store, ref)
        if changes is None:
            changes = pending(store, c).changes
        view = view_of(store, c)
        layer = read_layer(store, base(store, c))
        return cls(store, layer.root, changes, partial(read_container_file, view))

    def _entries(self, path: bytes) -> list[Entry]:
        pend = self._by_parent.get(path, {})
        parent_change = self._change_at(path)
        under_deleted = parent_change is not None and parent_change.status == DELETED
        under_added = parent_change is not None and parent_change.status == ADDED
        out = []
        if not under_added:
            for e in self.base._entries(path):
                ch = pend.get(e.name)
                if under_deleted:
                    out.append(Entry(e.path, DELETED, e.meta, blob=e.blob, ref=e.ref,
                                     dirty=e.ref is not None))
                elif ch is None:
                    out.append(Entry(e.path, UNCHANGED, e.meta, blob=e.blob, ref=e.ref,
                                     dirty=e.path in self._dirty))
                else:
                    out.append(self._from_change(ch, e))
        known = {e.name for e in out}
        for name, ch in pend.items():
            if name not in known:
                out.append(self._from_change(ch, None))
        return out

    def _change_at(self, path: bytes) -> Change | None:
        """The change at `path` or at its nearest changed ancestor that is A or D."""
        while path:
            parent, _, name = path.rpartition(b"/")
            ch = self._by_parent.get(parent, {}).get(name)
            if ch is not None and ch.status in (ADDED, DELETED):
                return ch
            path = parent
        return None

    def entry_for_change(self, ch: Change) -> Entry:
        """The entry a pending change stands for (what the Changes list previews)."""
        with self._lock:
            parent, _, name = ch.path.rpartition(b"/")
            for e in self.base._entries(parent) if self.base._dir(1, parent) else ():
                if e.name == name:
                    return self._from_change(ch, e)
            return self._from_change(ch, None)

    def _from_change(self, ch: Change, base: Entry | None) -> Entry:
        is_dir_now = (ch.new or ch.old).kind == DIR
        ref = base.ref if base is not None else None
        if ch.status == DELETED:
            return Entry(ch.path, DELETED, ch.old, blob=ch.old_blob, ref=ref,
                         dirty=ref is not None, change=ch)
        return Entry(ch.path, ch.status, ch.new, old=ch.old, blob=ch.new_blob,
                     old_blob=ch.old_blob, ref=None if ch.status == ADDED else ref,
                     dirty=is_dir_now and (ch.path in self._dirty or ref is not None),
                     change=ch)

    def size(self, e: Entry) -> int:
        if e.is_dir and e.path not in self._dirty and e.ref is not None:
            with self._lock:
                return self.base._tree_size(e.ref)
        if e.is_dir:
            return self._dir_size_pending(e)
        return e.meta.size

    def read_new(self, e: Entry, limit: int) -> bytes:
        if e.status == UNCHANGED:
            return read_head(self.store, e.blob, limit)
        return self.read_pending(e.path, limit)


def own_meta(store: Store, ref: DirRef) -> Meta:
    """A directory's own metadata from the '.' line that starts its record."""
    for name, _mode, sha in store.read_tree(ref.meta):
        if name == RECORD:
            first = store.read_blob(sha).split(b"\n", 1)[0].decode("ascii")
            label, *fields = first.split(" ")
            if label == ".":
                return Meta.parse(fields)
            break
    return read_dir(store, ref).own  # not the expected layout: let read_dir judge it


def read_container_file(view: object, path: bytes, limit: int) -> bytes:
    """At most `limit` bytes of a file (a symlink's target) as the container sees it
    at `path`."""
    from layerctl.beneath import Changed
    from layerctl.containers.changes import read_entry

    found = view.resolve(path)
    if found is None:
        return b""
    try:  # beneath the container's tree: a symlink, FIFO or device swapped in is not read
        return read_entry(view, *found, limit) or b""
    except Changed:
        return b""  # changed again since looked up: the next refresh shows it
