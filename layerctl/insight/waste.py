"""Wasted space across an image's layers: bytes shipped in the layer changesets that
the final filesystem does not show, each wasted copy counted once, with its class and
the layer that wasted it.

A *copy* of a path is a non-directory entry of a layer's changeset (what its layer tar
carries: store.diff's changes); it ships its size when it is a regular file that is not
a hardlink to an earlier member (tar writes those as links, 0 bytes). A copy is wasted
when a later layer replaces it (overwritten, metadata-only rewrite, rewritten identical)
or removes it (deleted: by a whiteout, an opaque directory, or removal / replacement of
a parent directory); the culprit is that later layer. The visible copy of each path is
kept, so reclaimable = total shipped - visible. See docs/design-notes.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from layerctl.insight.history import Step, Target
from layerctl.record import Frozen, Record
from layerctl.store.diff import DELETED
from layerctl.store.fstree import RECORD, DirRef, lookup, read_record
from layerctl.store.meta import DIR, FILE, Meta, parse_record
from layerctl.store.names import unmangle

if TYPE_CHECKING:
    from layerctl.store.repo import Store

DELETED_CLASS = "deleted"
OVERWRITTEN = "overwritten"
METADATA_ONLY = "metadata-only"
IDENTICAL = "rewritten-identical"
CLASSES = (DELETED_CLASS, OVERWRITTEN, METADATA_ONLY, IDENTICAL)

# How a deleted copy went: its own whiteout, an opaque parent, a parent removed by a
# whiteout, a parent replaced by a non-directory.
WHITEOUT, OPAQUE, PARENT_REMOVED, PARENT_REPLACED = (
    "whiteout", "opaque dir", "parent removed", "parent replaced")


# Value classes on layerctl.record, not dataclasses: `waste` is a plain read command
# and dataclasses costs its start-up ~4 ms (record.py says why).


class Copy(Frozen):
    __slots__ = ("step", "size", "meta", "blob")

    def __init__(self, step: int, size: int, meta: Meta, blob: bytes | None) -> None:
        self.step = step
        self.size = size  # bytes shipped
        self.meta = meta
        self.blob = blob


class Wasted(Frozen):
    """One wasted copy of `path`: `size` bytes shipped by layer `step`, made invisible
    by layer `culprit`."""

    __slots__ = ("path", "size", "step", "cls", "culprit", "how", "under")

    def __init__(self, path: bytes, size: int, step: int, cls: str, culprit: int,
                 how: str = "", under: bytes | None = None) -> None:
        self.path = path
        self.size = size
        self.step = step
        self.cls = cls
        self.culprit = culprit
        self.how = how
        self.under = under  # the directory whose removal or replacement took it


class LayerFacts(Record):
    __slots__ = ("index", "id", "label", "summary", "created_by", "shipped")

    def __init__(self, index: int, id: str, label: str, summary: str,  # noqa: A002
                 created_by: str, shipped: int = 0) -> None:
        self.index = index
        self.id = id
        self.label = label
        self.summary = summary
        self.created_by = created_by
        self.shipped = shipped  # content bytes in the layer's changeset


class PathRow(Record):
    __slots__ = ("path", "count", "wasted", "cls", "culprit", "copies", "files")

    def __init__(self, path: bytes, count: int, wasted: int, cls: str, culprit: int,
                 copies: list[Wasted], files: int = 0) -> None:
        self.path = path
        self.count = count  # copies of the path across layers (visible one included)
        self.wasted = wasted
        self.cls = cls  # class of the last wasted copy
        self.culprit = culprit  # the layer that wasted it
        self.copies = copies
        self.files = files  # > 0: a removed directory's row, standing for this many files


class Report(Record):
    __slots__ = ("name", "layers", "base_index", "base_name", "total", "visible", "wasted",
                 "counts", "duplicates")

    def __init__(self, name: str, layers: list[LayerFacts], base_index: int, base_name: str,
                 total: int, visible: int, wasted: list[Wasted], counts: dict[bytes, int],
                 duplicates: list[tuple[bytes, int, list[bytes]]] | None = None) -> None:
        self.name = name
        self.layers = layers
        self.base_index = base_index  # layers 0..base_index are the base
        self.base_name = base_name
        self.total = total
        self.visible = visible
        self.wasted = wasted
        self.counts = counts
        self.duplicates = [] if duplicates is None else duplicates

    @property
    def reclaimable(self) -> int:
        return sum(w.size for w in self.wasted)

    @property
    def efficiency(self) -> float:
        """Share of the shipped bytes that the final filesystem shows (1.0 if none)."""
        return 1.0 if self.total == 0 else 1.0 - self.reclaimable / self.total

    @property
    def user_bytes(self) -> int:
        return sum(layer.shipped for layer in self.layers[self.base_index + 1 :])

    @property
    def user_reclaimable(self) -> int:
        return sum(w.size for w in self.wasted if w.culprit > self.base_index)

    @property
    def base_reclaimable(self) -> int:
        return self.reclaimable - self.user_reclaimable

    @property
    def user_ratio(self) -> float:
        """Wasted by user layers / bytes user layers ship (inf: they ship none but waste)."""
        if self.user_bytes == 0:
            return 0.0 if self.user_reclaimable == 0 else float("inf")
        return self.user_reclaimable / self.user_bytes

    def class_bytes(self, cls: str, user_only: bool = False) -> int:
        return sum(w.size for w in self.wasted
                   if w.cls == cls and (not user_only or w.culprit > self.base_index))

    def without(self, ignored: Callable[[bytes], bool]) -> Report:
        """The report with the waste of ignored paths dropped (counted as kept)."""
        return Report(self.name, self.layers, self.base_index, self.base_name, self.total,
                      self.visible, [w for w in self.wasted if not ignored(w.path)],
                      self.counts, self.duplicates)

    def by_path(self, collapse: bool = False) -> list[PathRow]:
        """One row per path; with `collapse`, the files a removed or replaced directory
        took (and that wasted nothing else) become one row for the directory."""
        rows: dict[bytes, PathRow] = {}
        for w in self.wasted:
            row = rows.get(w.path)
            if row is None:
                row = rows[w.path] = PathRow(w.path, self.counts.get(w.path, 0), 0, w.cls,
                                             w.culprit, [])
            row.wasted += w.size
            row.copies.append(w)
            row.cls, row.culprit = w.cls, w.culprit
        if collapse:
            rows = _collapse(rows)
        return sorted(rows.values(), key=lambda r: (-r.wasted, r.path))

    def by_layer(self) -> list[tuple[LayerFacts, int, dict[str, int]]]:
        """(culprit layer, bytes it wasted, bytes per class), in layer order."""
        per: dict[int, dict[str, int]] = {}
        for w in self.wasted:
            classes = per.setdefault(w.culprit, {})
            classes[w.cls] = classes.get(w.cls, 0) + w.size
        return [(self.layers[i], sum(c.values()), c) for i, c in sorted(per.items())]

    def by_class(self) -> list[tuple[str, int, int]]:
        """(class, bytes, wasted copies) for each class, in CLASSES order."""
        out = []
        for cls in CLASSES:
            items = [w for w in self.wasted if w.cls == cls]
            out.append((cls, sum(w.size for w in items), len(items)))
        return out


def _collapse(rows: dict[bytes, PathRow]) -> dict[bytes, PathRow]:
    out: dict[bytes, PathRow] = {}
    dirs: dict[tuple[bytes, int], PathRow] = {}
    for path, row in rows.items():
        under = {w.under for w in row.copies}
        culprits = {w.culprit for w in row.copies}
        if len(under) != 1 or None in under or len(culprits) != 1:
            out[path] = row
            continue
        key = (under.pop(), row.culprit)
        d = dirs.get(key)
        if d is None:
            d = dirs[key] = PathRow(key[0], 0, 0, DELETED_CLASS, key[1], [], 0)
        d.count += row.count
        d.wasted += row.wasted
        d.copies.extend(row.copies)
        d.files += 1
    for (under, _culprit), d in dirs.items():
        if d.files == 1:  # a single file: its own row says more
            only = d.copies[0].path
            out[only] = rows[only]
        else:
            out[under + b"/\0" + str(d.culprit).encode()] = d
    return out


def _same_record(a: Meta, b: Meta) -> bool:
    """Same entry but for mtime: a rewrite that a copy or an unpacker repeated."""
    return (a.kind, a.mode, a.uid, a.gid, a.xattrs, a.link, a.rdev) == (
        b.kind, b.mode, b.uid, b.gid, b.xattrs, b.link, b.rdev)


def replaced_class(old: Copy, new: Meta, new_blob: bytes | None) -> str:
    if new.kind != old.meta.kind or new_blob != old.blob:
        return OVERWRITTEN
    return IDENTICAL if _same_record(old.meta, new) else METADATA_ONLY


def shipped_size(meta: Meta) -> int:
    """Content bytes the changeset tar carries for this entry."""
    return meta.size if meta.kind == FILE and meta.link is None else 0


def subtree(store: Store, root: DirRef | None,
            path: bytes) -> Iterable[tuple[bytes, Meta]]:
    """(path, meta) of every non-directory entry below the directory `path` of `root`,
    read from the metadata side alone (records and meta trees: no rootfs trees)."""
    if root is None:
        return
    found = lookup(store, root, path)
    if found is None or not isinstance(found[1], DirRef):
        return
    todo = [(path, found[1].meta)]
    while todo:
        prefix, meta_tree = todo.pop()
        for name, _mode, sha in store.read_tree(meta_tree):
            if name == RECORD:
                for child, meta in parse_record(read_record(store, sha))[1].items():
                    yield prefix + b"/" + child, meta
            else:
                todo.append((prefix + b"/" + unmangle(name), sha))


class _Ledger:
    """The live copies while the steps are applied in order. With `lazy`, layer 0 is
    not read: a path no later layer set still holds its layer-0 copy, which the change
    that replaces or removes it describes (its old entry)."""

    def __init__(self, store: Store, lazy: bool) -> None:
        self.store = store
        self.lazy = lazy
        self.live: dict[bytes, Copy] = {}
        self.counts: dict[bytes, int] = {}
        self.wasted: list[Wasted] = []

    def previous(self, path: bytes, meta: Meta | None, blob: object) -> Copy | None:
        copy = self.live.pop(path, None)
        if copy is not None or not self.lazy or meta is None or meta.kind == DIR:
            return copy
        self.counts[path] = self.counts.get(path, 0) + 1
        return Copy(0, shipped_size(meta), meta, blob if isinstance(blob, bytes) else None)

    def end(self, path: bytes, meta: Meta | None, blob: object, culprit: int, how: str,
            under: bytes | None = None) -> None:
        copy = self.previous(path, meta, blob)
        if copy is not None:
            self.wasted.append(Wasted(path, copy.size, copy.step, DELETED_CLASS, culprit, how,
                                      under))

    def end_below(self, step: Step, path: bytes, culprit: int, how: str,
                  under: bytes) -> None:
        # Cost follows the removed subtree, read from the parent layer's tree. end() for
        # each of its files, unrolled: one `rm -rf` can take thousands.
        live, counts, wasted, lazy = self.live, self.counts, self.wasted, self.lazy
        for sub, meta in subtree(self.store, step.parent_root, path):
            copy = live.pop(sub, None)
            if copy is not None:
                wasted.append(Wasted(sub, copy.size, copy.step, DELETED_CLASS, culprit, how,
                                     under))
            elif lazy:  # its layer-0 copy (a subtree's entries are no directories)
                counts[sub] = counts.get(sub, 0) + 1
                wasted.append(Wasted(sub, shipped_size(meta), 0, DELETED_CLASS, culprit, how,
                                     under))

    def apply(self, step: Step, facts: LayerFacts) -> None:
        replaced = _replaced_dirs(step)
        i = step.index
        for ch in step.changes:
            p = ch.path
            if ch.status == DELETED:
                opaque = next((d for d in replaced if p.startswith(d + b"/")), None)
                if ch.old is not None and ch.old.kind == DIR:
                    self.end_below(step, p, i, OPAQUE if opaque else PARENT_REMOVED,
                                   opaque or p)
                else:
                    self.end(p, ch.old, ch.old_blob, i, OPAQUE if opaque else WHITEOUT,
                             opaque)
                continue
            new = ch.new
            if ch.old is not None and ch.old.kind == DIR and new.kind != DIR:
                self.end_below(step, p, i, PARENT_REPLACED, p)
            old = self.previous(p, ch.old, ch.old_blob)
            if old is not None:
                cls = replaced_class(old, new, ch.new_blob)
                self.wasted.append(Wasted(p, old.size, old.step, cls, i))
            if new.kind == DIR:
                continue
            size = shipped_size(new)
            self.live[p] = Copy(i, size, new, ch.new_blob)
            self.counts[p] = self.counts.get(p, 0) + 1
            facts.shipped += size


def _replaced_dirs(step: Step) -> list[bytes]:
    """Opaque directories that the layer fills anew: their old entries went with the
    opaque marker. (store.diff also calls a directory emptied by `rm` opaque; there the
    entries' own whiteouts are the cause.)"""
    opaque = {ch.path for ch in step.changes if ch.opaque}
    if not opaque:
        return []
    return sorted({p for ch in step.changes if ch.status != DELETED
                   for p in (ch.path.rpartition(b"/")[0],) if p in opaque})


def facts_of(step: Step) -> LayerFacts:
    layer = step.layer
    return LayerFacts(step.index, step.id, step.label, step.summary,
                      layer.created_by if layer else "")


def analyze(store: Store, target: Target, base_index: int, base_name: str,
            duplicates: bool = False) -> Report:
    """The report for `target`. Layer 0 is summed, not diffed, unless `duplicates` asks
    for every visible file (then the whole top filesystem is read).

    The analysis of committed layers is kept in the store's cache under the top layer's
    id (which fixes every layer below it, their trees and messages) and the code stamp
    of the modules that compute it: a second run reads one file and walks no tree. The
    base boundary is applied on top, so `--base` needs no new analysis; a container's
    pending changes are never kept (they change)."""
    from layerctl.store import cache

    key = _analysis_key(target)
    kind = ANALYSIS + ("-duplicates" if duplicates else "")
    kept = cache.load(store, kind, key) if key else None
    if kept is not None:
        try:
            return _from_kept(kept, target.name, base_index, base_name)
        except (TypeError, ValueError):
            pass  # malformed: recompute
    report = _analyze(store, target, base_index, base_name, duplicates)
    if key:
        cache.save(store, kind, key, _to_kept(report))
        cache.drop_others(store, kind, key.partition("-")[0] + "-", key)
    return report


ANALYSIS = "waste"  # cache/waste/<top layer id>-<code stamp>


def _analysis_key(target: Target) -> str | None:
    if target.pending is not None or not target.layers:
        return None
    from layerctl.store import cache

    stamp = cache.code_stamp("layerctl.insight.waste", "layerctl.insight.history",
                             "layerctl.images", "layerctl.store.diff", "layerctl.store.meta",
                             "layerctl.store.fstree")
    return f"{target.layers[-1].id}-{stamp}"


def _to_kept(r: Report) -> tuple:
    return ([(f.index, f.id, f.label, f.summary, f.created_by, f.shipped) for f in r.layers],
            r.total, r.visible,
            [(w.path, w.size, w.step, w.cls, w.culprit, w.how, w.under) for w in r.wasted],
            r.counts, r.duplicates)


def _from_kept(kept: object, name: str, base_index: int, base_name: str) -> Report:
    layers, total, visible, wasted, counts, dups = kept
    if not (isinstance(counts, dict) and isinstance(total, int) and isinstance(visible, int)
            and isinstance(dups, list)):
        raise ValueError("not a kept analysis")
    if not 0 <= base_index < len(layers):
        raise ValueError("base outside the kept layers")
    return Report(name, [LayerFacts(*f) for f in layers], base_index, base_name, total,
                  visible, [Wasted(*w) for w in wasted], counts, dups)


def _analyze(store: Store, target: Target, base_index: int, base_name: str,
             duplicates: bool) -> Report:
    from layerctl.images import layer_size
    from layerctl.insight.history import steps

    ledger = _Ledger(store, lazy=not duplicates)
    layers = []
    todo = steps(store, target, start=0 if duplicates else 1)
    if not duplicates:
        first = Step(0, target.layers[0], None, [])
        facts = facts_of(first)
        facts.shipped = layer_size(store, target.layers[0])  # kept per layer id
        layers.append(facts)
    for step in todo:
        facts = facts_of(step)
        ledger.apply(step, facts)
        layers.append(facts)
    total = sum(f.shipped for f in layers)
    report = Report(target.name, layers, base_index, base_name, total,
                    total - sum(w.size for w in ledger.wasted), ledger.wasted, ledger.counts)
    if duplicates:
        report.duplicates = _duplicates(ledger.live)
    return report


def _duplicates(live: dict[bytes, Copy]) -> list[tuple[bytes, int, list[bytes]]]:
    by_blob: dict[bytes, list[bytes]] = {}
    for path, c in live.items():
        if c.size > 0 and c.blob is not None:
            by_blob.setdefault(c.blob, []).append(path)
    return sorted(
        ((blob, live[paths[0]].size, sorted(paths))
         for blob, paths in by_blob.items() if len(paths) > 1),
        key=lambda d: (-(len(d[2]) - 1) * d[1], d[2][0]))


# -- base boundary ---------------------------------------------------------------------

COMMIT_CREATED_BY = "layerctl commit "


def default_base(store: Store, target: Target) -> tuple[int, str]:
    """The nearest strict ancestor of the top that is the top of an image the user
    imported, pulled or loaded (a tag on it, not made by `layerctl commit`); else layer 0,
    as dive counts. Returns (index, description)."""
    from layerctl.images import list_images

    tops: dict[str, str] = {}
    for name, sha in list_images(store):
        tops.setdefault(sha, str(name))
    last = len(target.layers) - (0 if target.pending is not None else 1)
    for i in range(last - 1, -1, -1):
        layer = target.layers[i]
        if layer.id in tops and not layer.created_by.startswith(COMMIT_CREATED_BY):
            return i, tops[layer.id]
    return 0, "layer 0"


def base_of(store: Store, target: Target, ref: str | None) -> tuple[int, str]:
    if not ref:
        return default_base(store, target)
    from layerctl.images import resolve
    from layerctl.insight.history import ancestor_index

    return ancestor_index(target, resolve(store, ref)), ref
