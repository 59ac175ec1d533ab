"""Path history across a layer chain: blame, line blame, per-directory views and
the "did this layer touch PATH" test behind `log -- PATH`.

One mechanism underneath: a per-layer lookup of the path component by component
(PathLookup.probe). Each layer is a full tree, and a directory's pair of tree ids
(rootfs, meta) changes whenever anything below it changes, so when a layer's
directory on the path has the same ids as the previous layer's, nothing below
changed and the walk stops there. The cost is layers x path depth, never the
size of the image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from layerctl.errors import BadInput, NotFound
from layerctl.store.diff import ADDED, CHANGED, DELETED, Change, diff
from layerctl.store.fstree import DirRef
from layerctl.store.layers import Layer
from layerctl.store.meta import DIR, FILE, Meta
from layerctl.store.pathlookup import Entry, PathLookup, Probe, parse_path

if TYPE_CHECKING:
    from layerctl.store.repo import Store

# Event kinds (the letters of insight-specs §D3).
INTRODUCED, CONTENT, METADATA, TYPE, REMOVED = "A", "M", "m", "T", "D"
EVENT_WORDS = {INTRODUCED: "added", CONTENT: "content", METADATA: "metadata", TYPE: "type",
               REMOVED: "deleted"}
# How a path was deleted.
BY_WHITEOUT, BY_OPAQUE = "whiteout", "opaque directory"
BY_PARENT, BY_PARENT_REPLACED = "parent removed", "parent replaced by a non-directory"
UNCOMMITTED = "(uncommitted)"

# -- the layer chain ---------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One layer of the chain, or the container's pending changes (layer None)."""

    layer: Layer | None
    index: int

    @property
    def id(self) -> str:
        return self.layer.id if self.layer else UNCOMMITTED

    @property
    def short(self) -> str:
        return self.layer.id[:12] if self.layer else UNCOMMITTED


@dataclass
class Pending:
    """A container's pending changes, as a last (uncommitted) step of the chain."""

    changes: list[Change]
    real: dict[bytes, bytes]  # path -> host path of new content (files changed or added)


def pending_of(store: Store, container: object, paths: list[bytes] | None) -> Pending:
    """The pending changes of `container` at `paths` and their ancestors (all if None)."""
    from layerctl.containers import pending

    cands = None
    if paths is not None:
        wanted: set[bytes] = set()
        for p in paths:
            parts = p.split(b"/")
            wanted.update(b"/".join(parts[: i + 1]) for i in range(len(parts)))
        cands = tuple(sorted(wanted))
    p = pending(store, container, cands)
    real = {path: obs.real for path, obs in p.scan.observed.items()}
    return Pending(p.changes, real)


# -- events ------------------------------------------------------------------------


@dataclass
class Event:
    step: Step
    change: str  # A M m T D
    meta: Meta | None  # the entry after the change (before it, for D)
    blob: bytes | None
    mechanism: str = ""  # for D: whiteout, parent removed, opaque directory
    where: bytes | None = None  # for D by parent/opaque: the directory responsible
    details: list[str] = field(default_factory=list)


@dataclass
class PathHistory:
    path: bytes
    events: list[Event]
    exists: bool
    is_dir: bool = False

    def _last(self, kinds: str) -> Event | None:
        return next((e for e in reversed(self.events) if e.change in kinds), None)

    @property
    def introduced(self) -> Event | None:
        return self._last(INTRODUCED) if self.exists else None

    @property
    def content(self) -> Event | None:
        """The layer that last set the content (added, rewritten or changed type)."""
        return self._last(INTRODUCED + CONTENT + TYPE) if self.exists else None

    @property
    def metadata(self) -> Event | None:
        """The layer that last set ownership, mode, xattrs or hardlink group."""
        if not self.exists:
            return None
        for e in reversed(self.events):
            if e.change in (INTRODUCED, TYPE) or (e.change in (CONTENT, METADATA) and e.details
                                                   and _attrs_changed(e)):
                return e
        return None

    @property
    def deleted(self) -> Event | None:
        return None if self.exists else self._last(REMOVED)


_ATTR_WORDS = ("mode", "uid", "gid", "xattr", "hardlink", "rdev", "type")


def _attrs_changed(e: Event) -> bool:
    return any(d.split(" ", 1)[0] in _ATTR_WORDS for d in e.details)


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    if a[0].kind == DIR and b[0].kind == DIR:
        return a[0] == b[0]  # a directory's events are its own record's; children are theirs
    return a == b


def _classify(step: Step, old: Entry | None, new: Entry | None) -> Event | None:
    if _same(old, new):
        return None
    if old is None:
        return Event(step, INTRODUCED, new[0], _blob(new))
    if new is None:
        return Event(step, REMOVED, old[0], _blob(old))
    ch = Change(b"", CHANGED, old=old[0], new=new[0], old_blob=_blob(old), new_blob=_blob(new))
    details = ch.details()
    if old[0].kind != new[0].kind:
        kind = TYPE
    elif ch.content_changed:
        kind = CONTENT
    else:
        kind = METADATA
    return Event(step, kind, new[0], _blob(new), details=details)


def _blob(entry: Entry) -> bytes | None:
    obj = entry[1]
    return obj if isinstance(obj, bytes) else None


def _deletion(lookup: PathLookup, parts: list[bytes], old: Probe, new: Probe) -> tuple[str, bytes]:
    """How a path present in `old` is gone in `new`: the outermost directory on the
    path whose old entries were all replaced by new ones (what a layer tar says with an
    opaque marker), else the ancestor removed or replaced by a non-directory, else its
    own whiteout. A directory emptied of everything is told as whiteouts: a layer tar
    cannot tell the two apart either."""
    depth = new.blocked if new.blocked is not None else len(parts) - 1
    for k in range(1, min(depth + 1, len(old.refs), len(new.refs))):
        a, b = old.refs[k], new.refs[k]
        if a == b:
            continue
        before, after = lookup.children(a), lookup.children(b)
        if before and after and not before & after:
            return BY_OPAQUE, b"/".join(parts[:k])
    if new.blocked is not None and new.blocked < len(parts) - 1:
        how = BY_PARENT if new.blocker is None else BY_PARENT_REPLACED
        return how, b"/".join(parts[: new.blocked + 1])
    return BY_WHITEOUT, b"/".join(parts)


def _pending_entry(
    pend: Pending, parts: list[bytes], base: Probe
) -> tuple[Entry | None, str, bytes]:
    """The path's entry in the container's view (from its pending changes): (entry,
    deletion mechanism, where)."""
    by_path = {c.path: c for c in pend.changes}
    path = b"/".join(parts)
    mine = by_path.get(path)
    for k in range(1, len(parts)):
        anc = b"/".join(parts[:k])
        ch = by_path.get(anc)
        if ch is None:
            continue
        if ch.status == DELETED:
            return None, BY_PARENT, anc
        if ch.new is not None and ch.new.kind != DIR:
            return None, BY_PARENT_REPLACED, anc
        if ch.opaque and mine is not None and mine.status == DELETED:
            return None, BY_OPAQUE, anc
    if mine is None:
        return base.entry, "", b""
    if mine.status == DELETED:
        return None, BY_WHITEOUT, path
    return (mine.new, mine.new_blob), "", b""


def path_history(
    store: Store, chain: list[Layer], path: bytes | str, pend: Pending | None = None,
    lookup: PathLookup | None = None,
) -> tuple[PathHistory, list[Probe]]:
    """Every event of `path` along `chain` (oldest first), then the pending step."""
    lookup = lookup or PathLookup(store)
    parts = parse_path(path)
    events: list[Event] = []
    probes: list[Probe] = []
    prev: Probe | None = None
    for i, layer in enumerate(chain):
        cur = lookup.probe(layer.root, parts, prev)
        old_entry = prev.entry if prev else None
        ev = _classify(Step(layer, i), old_entry, cur.entry)
        if ev is not None:
            if ev.change == REMOVED:
                ev.mechanism, ev.where = _deletion(lookup, parts, prev, cur)
            events.append(ev)
        probes.append(cur)
        prev = cur
    entry = prev.entry if prev else None
    if pend is not None:
        base = prev or Probe((), None, 0)
        new_entry, how, where = _pending_entry(pend, parts, base)
        ev = _classify(Step(None, len(chain)), entry, new_entry)
        if ev is not None:
            if ev.change == REMOVED:
                ev.mechanism, ev.where = how, where
            events.append(ev)
        entry = new_entry
    hist = PathHistory(b"/".join(parts), events, entry is not None,
                       entry is not None and entry[0].kind == DIR)
    return hist, probes


def touched(lookup: PathLookup, layer: Layer, parent: Layer | None, parts: list[bytes],
            cache: dict[str, Probe]) -> bool:
    """Did `layer` change anything at or under the path (relative to its first parent)?"""
    mine = cache.get(layer.id)
    theirs = cache.get(parent.id) if parent else None
    if mine is None:
        mine = lookup.probe(layer.root, parts, theirs)
        cache[layer.id] = mine
    if parent is None:
        return mine.entry is not None
    if theirs is None:
        theirs = lookup.probe(parent.root, parts, mine)
        cache[parent.id] = theirs
    return mine.entry != theirs.entry


# -- line blame ----------------------------------------------------------------------


@dataclass
class BlamedLine:
    number: int
    text: bytes
    step: Step


def _is_text(data: bytes) -> bool:
    return b"\0" not in data[:8000]


def line_blame(store: Store, hist: PathHistory, pend: Pending | None) -> list[BlamedLine]:
    """Which step last changed each line: a line diff between consecutive content
    versions of the path's current life (from its last introduction), oldest first."""
    if not hist.exists or hist.is_dir:
        raise BadInput(f"{_show(hist.path)} is not a file here: line blame needs a text file")
    import difflib

    start = max(i for i, e in enumerate(hist.events) if e.change in (INTRODUCED, TYPE))
    owners: list[Step] = []
    lines: list[bytes] = []
    for e in hist.events[start:]:
        if e.change not in (INTRODUCED, CONTENT, TYPE):
            continue
        if e.meta.kind != FILE:
            raise BadInput(f"{_show(hist.path)} is not a regular file: line blame needs text")
        data = _read_version(store, e, hist.path, pend)
        if not _is_text(data):
            raise BadInput(f"{_show(hist.path)} is binary: line blame needs a text file")
        new_lines = data.splitlines(keepends=True)
        new_owners: list[Step] = []
        matcher = difflib.SequenceMatcher(None, lines, new_lines, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                new_owners.extend(owners[i1:i2])
            else:
                new_owners.extend([e.step] * (j2 - j1))
        lines, owners = new_lines, new_owners
    return [BlamedLine(n + 1, t, s) for n, (t, s) in enumerate(zip(lines, owners, strict=True))]


def _read_version(store: Store, e: Event, path: bytes, pend: Pending | None) -> bytes:
    if e.step.layer is not None:  # a pending blob id is a hash only, not in the store
        return store.read_blob(e.blob)
    real = pend.real.get(path) if pend else None
    if real is None:
        raise NotFound(f"the pending content of {_show(path)} is gone")
    with open(real, "rb") as f:
        return f.read()


# -- directories ---------------------------------------------------------------------


@dataclass
class DirView:
    """Per child: the step that last changed content at or under it; per step: the
    bytes of visible regular files whose content it last set."""

    children: dict[bytes, Step]
    bytes_by_step: dict[str, int]
    steps: dict[str, Step]


def dir_view(store: Store, chain: list[Layer], path: bytes | str,
             pend: Pending | None = None) -> DirView:
    """Tree diffs of the directory between consecutive layers (unchanged subtrees are
    skipped by id), so the cost follows what changed under it."""
    lookup = PathLookup(store)
    parts = parse_path(path)
    last: dict[bytes, Step] = {}
    owner: dict[bytes, tuple[Step, int]] = {}  # file path -> (step, size), visible now
    prev: Probe | None = None
    prev_ref: DirRef | None = None
    for i, layer in enumerate(chain):
        cur = lookup.probe(layer.root, parts, prev)
        ref = cur.entry[1] if cur.entry and isinstance(cur.entry[1], DirRef) else None
        if ref != prev_ref:
            _account(Step(layer, i), diff(store, prev_ref, ref), last, owner)
        prev, prev_ref = cur, ref
    if pend is not None:
        prefix = b"/".join(parts)
        rel = []
        for ch in pend.changes:
            if prefix and not ch.path.startswith(prefix + b"/"):
                continue
            rel.append(Change(ch.path[len(prefix) + 1 :] if prefix else ch.path, ch.status,
                              ch.old, ch.new, ch.old_blob, ch.new_blob, ch.opaque))
        _account(Step(None, len(chain)), rel, last, owner)
    if prev_ref is None:
        raise NotFound(f"{_show(b'/'.join(parts))} is not a directory in this image")
    sizes: dict[str, int] = {}
    steps: dict[str, Step] = {}
    for step, size in owner.values():
        sizes[step.id] = sizes.get(step.id, 0) + size
        steps[step.id] = step
    return DirView(dict(sorted(last.items())), sizes, steps)


def _account(step: Step, changes: Iterable[Change], last: dict[bytes, Step],
             owner: dict[bytes, tuple[Step, int]]) -> None:
    for ch in changes:
        child = ch.path.split(b"/", 1)[0]
        gone_dir = ch.status == DELETED or (
            ch.old is not None and ch.new is not None and ch.old.kind == DIR
            and ch.new.kind != DIR)
        if gone_dir:
            for p in [p for p in owner if p == ch.path or p.startswith(ch.path + b"/")]:
                del owner[p]
        if ch.status == DELETED:
            if ch.path == child:
                last.pop(child, None)
            else:
                last[child] = step
            continue
        content = ch.status == ADDED or ch.content_changed or ch.old.kind != ch.new.kind
        if not content:
            continue
        if ch.new.kind != DIR or ch.status == ADDED:
            last[child] = step
        if ch.new.kind == FILE and ch.new.link is None:  # a hardlink group counts once
            owner[ch.path] = (step, ch.new.size)
        elif ch.new.kind == FILE:
            owner.pop(ch.path, None)


def _show(path: bytes) -> str:
    return "/" + path.decode("utf-8", "backslashreplace")
