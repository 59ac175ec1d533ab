"""Tree diff between two layers: O(changed subtrees), unchanged subtrees skipped by id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from layerctl.record import Frozen
from layerctl.store.fstree import Dir, DirRef, read_dir, walk_children
from layerctl.store.meta import DIR, KIND_NAMES, Meta
from layerctl.words import path_text, quote_name

if TYPE_CHECKING:
    from layerctl.store.types import TreeReader

ADDED, CHANGED, DELETED = "A", "C", "D"


class Change(Frozen):
    """One path that differs, as `docker diff` shows it, with the facts behind it."""

    __slots__ = ("path", "status", "old", "new", "old_blob", "new_blob", "opaque")

    def __init__(self, path: bytes, status: str, old: Meta | None = None,
                 new: Meta | None = None, old_blob: bytes | None = None,
                 new_blob: bytes | None = None, opaque: bool = False):
        self.path = path
        self.status = status
        self.old = old
        self.new = new
        self.old_blob = old_blob
        self.new_blob = new_blob
        self.opaque = opaque  # a directory replaced: old entries all gone, new ones there

    @property
    def content_changed(self) -> bool:
        return (
            self.old is not None
            and self.new is not None
            and self.old.kind != DIR
            and (self.old_blob != self.new_blob or self.old.kind != self.new.kind)
        )

    def details(self) -> list[str]:
        """What changed, in words: 'content', 'mode 0644→4755', 'uid 0→1000', ..."""
        old, new = self.old, self.new
        if old is None or new is None:
            return []
        out = []
        if old.kind != new.kind:
            out.append(f"type {KIND_NAMES[old.kind]}→{KIND_NAMES[new.kind]}")
        elif self.content_changed:
            out.append("target" if new.kind == "l" else "content")
        if old.mode != new.mode:
            out.append(f"mode {old.mode:04o}→{new.mode:04o}")
        if old.uid != new.uid:
            out.append(f"uid {old.uid}→{new.uid}")
        if old.gid != new.gid:
            out.append(f"gid {old.gid}→{new.gid}")
        if old.rdev != new.rdev:
            out.append(f"rdev {_rdev(old.rdev)}→{_rdev(new.rdev)}")
        old_x, new_x = dict(old.xattrs), dict(new.xattrs)
        for name in sorted(old_x.keys() | new_x.keys()):
            label = quote_name(name)
            if name not in old_x:
                out.append(f"xattr {label} added")
            elif name not in new_x:
                out.append(f"xattr {label} removed")
            elif old_x[name] != new_x[name]:
                out.append(f"xattr {label} changed")
        if old.link != new.link:
            out.append(f"hardlink {_link(old.link)}→{_link(new.link)}")
        if self.opaque:
            out.append("replaced (opaque)")
        if old.mtime_ns != new.mtime_ns and not out:
            out.append("mtime")
        return out


def _rdev(rdev: tuple[int, int] | None) -> str:
    return f"{rdev[0]},{rdev[1]}" if rdev else "-"


def _link(link: bytes | None) -> str:
    return path_text(link) if link else "none"


def diff(store: TreeReader, old: DirRef | None, new: DirRef | None) -> Iterator[Change]:
    """Changes from `old` to `new` (either may be None: the empty filesystem)."""
    if old == new:
        return
    old_dir = read_dir(store, old) if old else None
    new_dir = read_dir(store, new) if new else None
    yield from _diff_dirs(store, old_dir, new_dir, b"")


def _diff_dirs(store: TreeReader, a: Dir | None, b: Dir | None, prefix: bytes) -> Iterator[Change]:
    """The changes below two decoded directories, in walk order (parents first, names
    sorted). Iterative, with a stack of the directories being compared: a change deep
    in the tree is yielded from this one frame, not passed up through a generator per
    level (which cost a fifth of a deep diff such as a `chown -R`)."""
    if b is None:
        return
    if a is None:
        yield from _added_children(store, b, prefix)
        return
    stack = [(a, b, prefix, iter(sorted(a.files.keys() | a.dirs.keys()
                                         | b.files.keys() | b.dirs.keys())))]
    while stack:
        a, b, prefix, names = stack[-1]
        for name in names:
            path = prefix + b"/" + name if prefix else name
            in_b = name in b.files or name in b.dirs
            if not in_b:
                meta, blob = _entry(store, a, name)
                yield Change(path, DELETED, old=meta, old_blob=blob)
            elif not (name in a.files or name in a.dirs):
                yield from _added(store, b, name, path)
            elif name in a.dirs and name in b.dirs:
                ref_a, ref_b = a.dirs[name], b.dirs[name]
                if ref_a == ref_b:
                    continue
                sub_a = read_dir(store, ref_a)
                sub_b = read_dir(store, ref_b)
                names_a = sub_a.files.keys() | sub_a.dirs.keys()
                names_b = sub_b.files.keys() | sub_b.dirs.keys()
                # replaced: its old entries all gone and new ones there, written as the
                # overlay opaque marker (one only emptied keeps explicit whiteouts, as
                # `rm dir/*` gives in Docker's layers)
                opaque = bool(names_a) and bool(names_b) and not names_a & names_b
                if sub_a.own != sub_b.own or opaque:
                    yield Change(path, CHANGED, old=sub_a.own, new=sub_b.own, opaque=opaque)
                stack.append((sub_a, sub_b, path, iter(sorted(names_a | names_b))))
                break  # into the subdirectory; this one's names go on after it
            elif name in a.files and name in b.files:
                if a.files[name] != b.files[name]:
                    (om, ob), (nm, nb) = a.files[name], b.files[name]
                    yield Change(path, CHANGED, old=om, new=nm, old_blob=ob, new_blob=nb)
            else:  # a directory became a file or the reverse
                old, old_blob = _entry(store, a, name)
                new, new_blob = _entry(store, b, name)
                yield Change(path, CHANGED, old=old, new=new, old_blob=old_blob,
                             new_blob=new_blob)
                if name in b.dirs:
                    yield from _added_children(store, read_dir(store, b.dirs[name]), path)
        else:
            stack.pop()


def _entry(store: TreeReader, d: Dir, name: bytes) -> tuple[Meta, bytes | None]:
    if name in d.dirs:
        return read_dir(store, d.dirs[name]).own, None
    return d.files[name]


def _added(store: TreeReader, parent: Dir, name: bytes, path: bytes) -> Iterator[Change]:
    if name in parent.dirs:
        sub = read_dir(store, parent.dirs[name])
        yield Change(path, ADDED, new=sub.own)
        yield from _added_children(store, sub, path)
    else:
        meta, blob = parent.files[name]
        yield Change(path, ADDED, new=meta, new_blob=blob)


def _added_children(store: TreeReader, d: Dir, prefix: bytes) -> Iterator[Change]:
    for path, meta, obj in walk_children(store, d, prefix):
        blob = None if isinstance(obj, DirRef) else obj
        yield Change(path, ADDED, new=meta, new_blob=blob)
