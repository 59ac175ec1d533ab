"""Three-way merge of layer trees, per path: what rebase, cherry-pick and revert apply.

`merge_trees(base, ours, theirs)` takes `ours` and applies the changes base→theirs on
it, path by path (only the paths theirs changed are looked at, so the cost follows
the changeset, not the image). Text files merge line-wise with `merge3`, a diff3 of
our own (difflib's matcher; no `git merge-file` process per file, and no dependency
on a git binary the store does not otherwise need), metadata records field by field.
What cannot be merged is a `MergeConflict`; the tree written then is the *partial*
result a user resolves in a container: text conflicts carry git's markers, other
conflicts keep the new base's entry (or theirs where the new base has none).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from layerctl.store.diff import diff
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef, dir_meta, lookup, read_dir
from layerctl.store.meta import DIR, FILE, Meta
from layerctl.store.objects import BLOB, PackWriter
from layerctl.words import path_text

# Single-file package databases: never line-merged (a clean-looking merge of two
# dpkg status files is a lie about what is installed). ostree-rs-ext #69.
PACKAGE_DBS = (b"var/lib/dpkg/status", b"var/lib/dpkg/available", b"lib/apk/db/installed",
               b"etc/ld.so.cache", b"usr/lib/sysimage/rpm/", b"var/lib/rpm/")
PACKAGE_HINT = "re-run the package step (apt-get/dnf/apk) on the result"
TEXT_LIMIT = 8 << 20  # larger files are not line-merged
MARKER_SIZE = 7

CONTENT, MODIFY_DELETE, DELETE_MODIFY, TYPE, ADD_ADD, PACKAGE_DB, METADATA, PARENT = (
    "both modified", "deleted by layer, modified by new base",
    "modified by layer, deleted by new base", "type changed", "both added",
    "package database changed on both sides", "metadata changed on both sides",
    "added under a path the new base removed")


@dataclass(frozen=True)
class MergeConflict:
    path: bytes
    kind: str
    detail: str = ""
    markers: bool = False  # the partial tree holds a text file with conflict markers

    def line(self) -> str:
        text = f"{self.kind}: {path_text(self.path)}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class MergeResult:
    root: DirRef
    conflicts: list[MergeConflict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_package_db(path: bytes) -> bool:
    return any(path == p or (p.endswith(b"/") and path.startswith(p)) for p in PACKAGE_DBS)


# -- text ---------------------------------------------------------------------------


def is_text(data: bytes) -> bool:
    return len(data) <= TEXT_LIMIT and b"\0" not in data[:8000]


def merge3(base: bytes, ours: bytes, theirs: bytes, labels: tuple[str, str] = ("ours", "theirs")
           ) -> tuple[bytes, bool]:
    """diff3 of three texts, line-wise: (merged text, clean). Changes to the same or
    adjacent base lines on both sides conflict, as `git merge-file` has them; the
    conflicting text is written between git's markers."""
    o = base.splitlines(keepends=True)
    a = ours.splitlines(keepends=True)
    b = theirs.splitlines(keepends=True)
    ma = _matches(o, a)
    mb = _matches(o, b)
    out: list[bytes] = []
    clean = True
    i = ia = ib = 0
    while True:
        n = 0
        while i + n < len(o) and ma[i + n] == ia + n and mb[i + n] == ib + n:
            n += 1
        if n:
            out.extend(o[i:i + n])
            i, ia, ib = i + n, ia + n, ib + n
            continue
        j = i
        while j < len(o) and (ma[j] < 0 or mb[j] < 0):
            j += 1
        ja = ma[j] if j < len(o) else len(a)
        jb = mb[j] if j < len(o) else len(b)
        chunk_o, chunk_a, chunk_b = o[i:j], a[ia:ja], b[ib:jb]
        if chunk_a == chunk_o:
            out.extend(chunk_b)
        elif chunk_b == chunk_o or chunk_a == chunk_b:
            out.extend(chunk_a)
        else:
            clean = False
            out.append(b"<" * MARKER_SIZE + b" " + labels[0].encode() + b"\n")
            out.extend(_terminated(chunk_a))
            out.append(b"=" * MARKER_SIZE + b"\n")
            out.extend(_terminated(chunk_b))
            out.append(b">" * MARKER_SIZE + b" " + labels[1].encode() + b"\n")
        if j >= len(o):
            break
        i, ia, ib = j, ja, jb
    return b"".join(out), clean


def _matches(o: list[bytes], other: list[bytes]) -> list[int]:
    """For each base line, the index of the line it matches in `other`, else -1."""
    m = [-1] * len(o)
    matcher = difflib.SequenceMatcher(None, o, other, autojunk=False)
    for start_o, start_x, n in matcher.get_matching_blocks():
        for k in range(n):
            m[start_o + k] = start_x + k
    return m


def _terminated(lines: list[bytes]) -> list[bytes]:
    if lines and not lines[-1].endswith(b"\n"):
        return [*lines[:-1], lines[-1] + b"\n"]
    return lines


def has_markers(data: bytes) -> bool:
    lines = data.splitlines()
    return any(line.startswith(b"<" * MARKER_SIZE + b" ") for line in lines) and any(
        line == b"=" * MARKER_SIZE for line in lines)


# -- metadata -----------------------------------------------------------------------

_FIELDS = ("mode", "uid", "gid", "rdev", "xattrs", "link")


def merge_meta(base: Meta | None, ours: Meta, theirs: Meta) -> tuple[Meta, list[str]]:
    """Field by field: a field one side changed takes that side's value; both changed
    differently is a conflict (ours kept) — except mtime, where the later wins: a
    timestamp is not something a user resolves."""
    ref = base or ours
    values = {}
    bad = []
    for name in _FIELDS:
        vb, vo, vt = getattr(ref, name), getattr(ours, name), getattr(theirs, name)
        if vo == vt or vt == vb:
            values[name] = vo
        elif vo == vb:
            values[name] = vt
        else:
            values[name] = vo
            bad.append(name)
    vb, vo, vt = ref.mtime_ns, ours.mtime_ns, theirs.mtime_ns
    values["mtime_ns"] = vt if vo == vb else vo if vt == vb else max(vo, vt)
    return ours.replace(**values), bad


# -- trees --------------------------------------------------------------------------

Entry = tuple[Meta, object]  # (meta, blob id or DirRef)


class _Merger:
    def __init__(self, store: object, writer: PackWriter, base: DirRef | None, ours: DirRef,
                 theirs: DirRef, labels: tuple[str, str], force_theirs: bool,
                 select: Callable[[bytes], bool] | None) -> None:
        self.select = select
        self.store, self.writer = store, writer
        self.base, self.ours, self.theirs = base, ours, theirs
        self.labels = labels
        self.force = force_theirs  # swap mode: theirs wins, conflicts only reported
        self.ed = TreeEditor(store, ours)
        self.result = MergeResult(ours)
        self.cut: list[bytes] = []  # conflicted directories: their changes below are moot

    def conflict(self, path: bytes, kind: str, detail: str = "", markers: bool = False) -> None:
        self.result.conflicts.append(MergeConflict(path, kind, detail, markers))

    def run(self) -> MergeResult:
        self._root()
        for ch in diff(self.store, self.base, self.theirs):
            p = ch.path
            if any(p.startswith(c + b"/") for c in self.cut):
                continue
            if self.select is not None and not self.select(p):
                continue
            b = (ch.old, ch.old_blob) if ch.old is not None else None
            t = (ch.new, ch.new_blob) if ch.new is not None else None
            self._path(p, b, t)
        self.result.root = self.ed.write(self.writer)
        return self.result

    def _root(self) -> None:
        if self.base is None:
            return
        b, o, t = (dir_meta(self.store, r) for r in (self.base, self.ours, self.theirs))
        if t != b and o != t:
            merged, bad = merge_meta(b, o, t)
            if bad and not self.force:
                self.conflict(b"", METADATA, ", ".join(bad))
            self.ed.set_dir(b"", t if self.force else merged)

    def _ours(self, p: bytes) -> Entry | None:
        got = self.ed.get(p)
        return None if got is None else (got[0], got[1])

    def _path(self, p: bytes, b: Entry | None, t: Entry | None) -> None:
        o = self._ours(p)
        if _same(o, t):
            return
        if t is None:  # the layer deletes p
            if o is None:
                self.result.notes.append(f"{path_text(p)}: deleted by the layer, "
                                         "already absent in the new base")
                return
            if self._unchanged(p, b, o):
                self.ed.delete(p)
                return
            what = self._first_change(p, b, o)
            self.conflict(p, MODIFY_DELETE, what)
            if self.force:
                self.ed.delete(p)
            return
        parent = p.rpartition(b"/")[0]
        if o is None:
            if parent and not self.ed.is_dir(parent):
                self.conflict(p, PARENT)
                self.cut.append(p)
                if self.force:
                    self._make_parents(parent)
                    self._apply(p, t)
                return
            if b is not None:
                self.conflict(p, DELETE_MODIFY)  # the partial result holds the layer's
            self._apply(p, t)
            return
        if b is not None and _same(o, b):
            self._apply(p, t)
            return
        om, tm = o[0], t[0]
        if om.kind != tm.kind:
            self.conflict(p, TYPE, f"new base: {_kind(om)}, layer: {_kind(tm)}")
            self.cut.append(p)
            if self.force:
                self._apply(p, t)
            return
        if om.kind == DIR:
            merged, bad = merge_meta(b[0] if b and b[0].kind == DIR else None, om, tm)
            if bad:
                self.conflict(p, METADATA, ", ".join(bad))
            self.ed.set_dir(p, tm if self.force else merged)
            return
        self._file(p, b, o, t)

    def _file(self, p: bytes, b: Entry | None, o: Entry, t: Entry) -> None:
        (om, ob), (tm, tb) = o, t
        bm, bb = b if b is not None and b[0].kind == om.kind else (None, None)
        size = None  # of a merged text, else the chosen side's
        if ob == tb or (bb is not None and bb == tb):
            blob = ob
        elif bb is not None and bb == ob:
            blob = tb
        elif is_package_db(p):
            self.conflict(p, PACKAGE_DB, PACKAGE_HINT)
            blob = ob
        elif om.kind == FILE and bb is not None:
            data = [self.store.read_blob(x) for x in (bb, ob, tb)]
            if all(is_text(d) for d in data):
                text, clean = merge3(*data, labels=self.labels)
                if not clean:
                    self.conflict(p, CONTENT, markers=not self.force)
                blob, size = self.writer.add(BLOB, text), len(text)
            else:
                self.conflict(p, CONTENT, "binary")
                blob = ob
        else:
            self.conflict(p, ADD_ADD if b is None else CONTENT,
                          "" if om.kind == FILE else _kind(om))
            blob = ob
        meta, bad = merge_meta(bm, om, tm)
        if bad:
            self.conflict(p, METADATA, ", ".join(bad))
        if self.force:
            meta, blob = tm, tb
        elif meta.kind == FILE:
            meta = meta.replace(size=size if size is not None else
                           (om.size if blob == ob else tm.size))
        self.ed.set_file(p, meta, blob)

    def _apply(self, p: bytes, t: Entry) -> None:
        meta, obj = t
        if meta.kind == DIR:
            self.ed.set_dir(p, meta)
        else:
            self.ed.set_file(p, meta, obj)

    def _make_parents(self, parent: bytes) -> None:
        parts = parent.split(b"/")
        for i in range(1, len(parts) + 1):
            q = b"/".join(parts[:i])
            if not self.ed.is_dir(q):
                found = lookup(self.store, self.theirs, q)
                self.ed.set_dir(q, found[0])

    def _unchanged(self, p: bytes, b: Entry | None, o: Entry) -> bool:
        """Ours still equals base at p — for a directory, its whole subtree."""
        if b is None or o[0].kind != b[0].kind:
            return False
        if o[0].kind != DIR:
            return _same(o, b)
        base_ref = lookup(self.store, self.base, p)[1]
        ours_ref = lookup(self.store, self.ours, p)[1]
        return base_ref == ours_ref

    def _first_change(self, p: bytes, b: Entry | None, o: Entry) -> str:
        if b is None or o[0].kind != DIR or b[0].kind != DIR:
            return "new base changed it"
        base_ref = lookup(self.store, self.base, p)[1]
        ours_ref = lookup(self.store, self.ours, p)[1]
        for ch in diff(self.store, base_ref, ours_ref):
            return f"new base changed {path_text(p + b'/' + ch.path)}"
        if read_dir(self.store, base_ref).own != read_dir(self.store, ours_ref).own:
            return "new base changed its metadata"
        return "new base changed it"


def _kind(meta: Meta) -> str:
    return {"-": "file", "d": "directory", "l": "symlink"}.get(meta.kind, "special file")


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    if a[0].kind == DIR or b[0].kind == DIR:
        return a[0] == b[0]  # a directory's own record; its entries are paths of their own
    return a == b


def merge_trees(store: object, writer: PackWriter, base: DirRef | None, ours: DirRef,
                theirs: DirRef, labels: tuple[str, str] = ("new base", "layer"),
                force_theirs: bool = False, select: Callable[[bytes], bool] | None = None
                ) -> MergeResult:
    """Apply base→theirs onto ours. With `force_theirs` (swap mode) theirs' entries
    win every conflict; the conflicts are still listed, as warnings. `select` limits
    the merge to the paths it accepts (split)."""
    return _Merger(store, writer, base, ours, theirs, labels, force_theirs, select).run()
