"""A path looked up in layer trees, one tree pair per path component, the trees and
records read kept for the next path (blame asks one path in every layer of a chain;
the package readers ask many paths of one layer).

Here, not in insight/blame.py, so that what only looks paths up (the package readers
under `waste`, `diff --packages`) loads neither the blame analysis nor dataclasses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.errors import Corrupt
from layerctl.record import Frozen
from layerctl.store.edit import split_path
from layerctl.store.fstree import RECORD, DirRef, read_record
from layerctl.store.meta import Meta, record_entry, record_own
from layerctl.store.names import mangle
from layerctl.store.objects import MODE_TREE

if TYPE_CHECKING:
    from layerctl.store.repo import Store

Entry = tuple[Meta, "bytes | DirRef | None"]  # (meta, blob id or DirRef; None: not stored yet)


class Probe(Frozen):
    """What one layer holds at a path: the directories walked and the entry found."""

    __slots__ = ("refs", "entry", "blocked", "blocker")

    def __init__(self, refs: tuple[DirRef, ...], entry: Entry | None,
                 blocked: int | None = None, blocker: Meta | None = None) -> None:
        self.refs = refs  # refs[k]: the directory holding path component k
        self.entry = entry
        self.blocked = blocked  # component index that is missing or not a directory
        self.blocker = blocker  # what stands at `blocked` when it is not a directory


class PathLookup:
    """Looks paths up in layer trees, reading one tree pair per path component."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._names: dict[bytes, dict[bytes, tuple[bytes, bytes]]] = {}
        self._records: dict[bytes, bytes] = {}

    def _tree(self, tree_id: bytes) -> dict[bytes, tuple[bytes, bytes]]:
        names = self._names.get(tree_id)
        if names is None:
            names = {n: (mode, sha) for n, mode, sha in self.store.read_tree(tree_id)}
            self._names[tree_id] = names
        return names

    def _record(self, ref: DirRef) -> bytes:
        rec = self._records.get(ref.meta)
        if rec is None:
            hit = self._tree(ref.meta).get(RECORD)
            if hit is None:
                raise Corrupt(f"meta tree {ref.meta.hex()} has no record")
            rec = read_record(self.store, hit[1])
            self._records[ref.meta] = rec
        return rec

    def dir_meta(self, ref: DirRef) -> Meta:
        try:
            return record_own(self._record(ref))
        except (ValueError, UnicodeDecodeError) as e:
            raise Corrupt(f"meta tree {ref.meta.hex()}: malformed record: {e}") from None

    def probe(self, root: DirRef, parts: list[bytes], prev: Probe | None = None) -> Probe:
        """The entry at `parts` under `root`. With `prev` (the same path in another
        layer), stop at the first directory whose ids equal prev's: all below is equal."""
        refs: list[DirRef] = []
        ref = root
        for k, part in enumerate(parts):
            if prev is not None and k < len(prev.refs) and prev.refs[k] == ref:
                return Probe((*refs, *prev.refs[k:]), prev.entry, prev.blocked, prev.blocker)
            refs.append(ref)
            name = mangle(part)
            hit = self._tree(ref.rootfs).get(name)
            if hit is None:
                return Probe(tuple(refs), None, k)
            mode, sha = hit
            if mode == MODE_TREE:
                meta_hit = self._tree(ref.meta).get(name)
                if meta_hit is None:
                    raise Corrupt(f"tree {ref.rootfs.hex()}: no metadata for directory {part!r}")
                ref = DirRef(sha, meta_hit[1])
                continue
            try:
                meta = record_entry(self._record(ref), part)
            except (ValueError, UnicodeDecodeError) as e:
                raise Corrupt(f"meta tree {ref.meta.hex()}: malformed record: {e}") from None
            if meta is None:
                raise Corrupt(f"tree {ref.rootfs.hex()}: no metadata for {part!r}")
            if k == len(parts) - 1:
                return Probe(tuple(refs), (meta, sha))
            return Probe(tuple(refs), None, k, meta)
        if prev is not None and len(parts) < len(prev.refs) and prev.refs[len(parts)] == ref:
            return Probe((*refs, *prev.refs[len(parts):]), prev.entry)
        return Probe((*refs, ref), (self.dir_meta(ref), ref))

    def children(self, ref: DirRef) -> set[bytes]:
        return set(self._tree(ref.rootfs))


def parse_path(text: str | bytes) -> list[bytes]:
    """A user's path (absolute or not) -> components; '..' is refused."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return split_path(raw)
