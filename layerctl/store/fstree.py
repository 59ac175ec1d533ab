"""A layer's filesystem as git objects: each directory is a pair of trees.

`rootfs/<dir>` holds the entries (blobs for files, symlinks and special files,
trees for subdirectories); `meta/<dir>` holds the directory's record (blob
'%', a name mangling never produces) and one tree per subdirectory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from layerctl.errors import Corrupt
from layerctl.record import Frozen, Record
from layerctl.store.meta import FILE, SYMLINK, Meta, format_record, parse_record
from layerctl.store.names import mangle, unmangle
from layerctl.store.objects import (
    BLOB,
    MODE_EXEC,
    MODE_FILE,
    MODE_LINK,
    MODE_TREE,
    TREE,
    PackWriter,
    serialize_tree,
)

if TYPE_CHECKING:
    from layerctl.store.types import TreeReader

RECORD = b"%"
EMPTY_BLOB = bytes.fromhex("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")


class DirRef(Frozen):
    """A directory in the store: its rootfs tree and its meta tree (binary ids)."""

    __slots__ = ("rootfs", "meta")

    def __init__(self, rootfs: bytes, meta: bytes):
        self.rootfs = rootfs
        self.meta = meta


class Dir(Record):
    """One directory, decoded: its own metadata, its non-directory entries, its subdirs."""

    __slots__ = ("own", "files", "dirs")

    def __init__(self, own: Meta, files: dict[bytes, tuple[Meta, bytes]] | None = None,
                 dirs: dict[bytes, DirRef] | None = None):
        self.own = own
        self.files = {} if files is None else files  # name -> (meta, blob)
        self.dirs = {} if dirs is None else dirs

    def names(self) -> list[bytes]:
        return sorted([*self.files, *self.dirs])


def git_mode(meta: Meta) -> bytes:
    if meta.kind == SYMLINK:
        return MODE_LINK
    if meta.kind == FILE and meta.mode & 0o100:
        return MODE_EXEC
    return MODE_FILE


_RECORDS_KEPT = 4096


def read_record(store: TreeReader, binsha: bytes) -> bytes:
    """A directory's record blob, kept on the reader itself (up to _RECORDS_KEPT, then
    started afresh) and so freed with it: one command passes the same directories
    several times (`waste`: a base layer's size from its records, then the diffs, the
    subtrees removed above it and the package owners read many of them again)."""
    kept: dict[bytes, bytes] | None = getattr(store, "_fstree_records", None)
    if kept is None:
        kept = {}
        try:
            setattr(store, "_fstree_records", kept)  # noqa: B010 - any TreeReader
        except AttributeError:  # a reader with __slots__: nothing kept
            return store.read_blob(binsha)
    data = kept.get(binsha)
    if data is None:
        if len(kept) >= _RECORDS_KEPT:
            kept.clear()
        data = kept[binsha] = store.read_blob(binsha)
    return data


def read_dir(store: TreeReader, ref: DirRef) -> Dir:
    """Decode one directory from the store."""
    rootfs = store.read_tree(ref.rootfs)
    meta_entries = store.read_tree(ref.meta)
    record_id = None
    meta_dirs = {}
    for name, _mode, sha in meta_entries:
        if name == RECORD:
            record_id = sha
        else:
            meta_dirs[name] = sha
    if record_id is None:
        raise Corrupt(f"meta tree {ref.meta.hex()} has no record")
    try:
        own, metas = parse_record(read_record(store, record_id))
    except (ValueError, UnicodeDecodeError) as e:
        raise Corrupt(f"record {record_id.hex()} is malformed: {e}") from None
    d = Dir(own)
    for name, mode, sha in rootfs:
        real = unmangle(name)
        if mode == MODE_TREE:
            if name not in meta_dirs:
                raise Corrupt(f"tree {ref.rootfs.hex()}: no metadata for directory {real!r}")
            d.dirs[real] = DirRef(sha, meta_dirs[name])
        else:
            if real not in metas:
                raise Corrupt(f"tree {ref.rootfs.hex()}: no metadata for {real!r}")
            d.files[real] = (metas[real], sha)
    return d


def write_dir(writer: PackWriter, d: Dir) -> DirRef:
    """Encode one directory (its subdirectories are already written)."""
    rootfs_entries = [(mangle(n), git_mode(m), sha) for n, (m, sha) in d.files.items()]
    meta_entries = []
    for name, sub in d.dirs.items():
        mangled = mangle(name)
        rootfs_entries.append((mangled, MODE_TREE, sub.rootfs))
        meta_entries.append((mangled, MODE_TREE, sub.meta))
    record = format_record(d.own, {n: m for n, (m, _) in d.files.items()})
    meta_entries.append((RECORD, MODE_FILE, writer.add(BLOB, record)))
    return DirRef(
        writer.add(TREE, serialize_tree(rootfs_entries)),
        writer.add(TREE, serialize_tree(meta_entries)),
    )


def dir_meta(store: TreeReader, ref: DirRef) -> Meta:
    """A directory's own metadata without decoding its entries."""
    for name, _mode, sha in store.read_tree(ref.meta):
        if name == RECORD:
            return parse_record(read_record(store, sha))[0]
    raise Corrupt(f"meta tree {ref.meta.hex()} has no record")


def walk(store: TreeReader, ref: DirRef) -> Iterator[tuple[bytes, Meta, bytes | DirRef]]:
    """Yield (path, meta, blob id or DirRef) for every entry, parents before children.

    The root itself comes first with path b"".
    """
    d = read_dir(store, ref)
    yield b"", d.own, ref
    yield from walk_children(store, d, b"")


def walk_children(
    store: TreeReader, d: Dir, prefix: bytes
) -> Iterator[tuple[bytes, Meta, bytes | DirRef]]:
    """walk() below an already decoded directory at `prefix`. A stack of the open
    directories, not a generator per level: an entry deep down is yielded once, not
    passed up through every level above it."""
    stack = [(prefix, d, iter(d.names()))]
    while stack:
        prefix, d, names = stack[-1]
        for name in names:
            path = prefix + b"/" + name if prefix else name
            if name in d.dirs:
                sub = d.dirs[name]
                sub_dir = read_dir(store, sub)
                yield path, sub_dir.own, sub
                stack.append((path, sub_dir, iter(sub_dir.names())))
                break  # into it; this directory's names go on after it
            meta, sha = d.files[name]
            yield path, meta, sha
        else:
            stack.pop()


def lookup(store: TreeReader, root: DirRef, path: bytes) -> tuple[Meta, bytes | DirRef] | None:
    """(meta, blob id or DirRef) of `path` under `root`, or None if absent."""
    parts = [p for p in path.split(b"/") if p]
    ref = root
    d = read_dir(store, ref)
    if not parts:
        return d.own, ref
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part in d.dirs:
            ref = d.dirs[part]
            d = read_dir(store, ref)
            if last:
                return d.own, ref
        elif part in d.files and last:
            return d.files[part]
        else:
            return None
    return None


def lookup_follow(
    store: TreeReader, root: DirRef, path: bytes, hops: int = 40
) -> tuple[Meta, bytes | DirRef] | None:
    """lookup() that follows symlinks as a process chrooted into the layer would."""
    parts = [p for p in path.split(b"/") if p and p != b"."]
    resolved: list[bytes] = []
    while parts:
        part = parts.pop(0)
        if part == b"..":
            if resolved:
                resolved.pop()
            continue
        found = lookup(store, root, b"/".join([*resolved, part]))
        if found is None:
            return None
        meta, obj = found
        if meta.kind == SYMLINK and isinstance(obj, bytes):  # a symlink has a blob
            hops -= 1
            if hops < 0:
                return None
            target = store.read_blob(obj)
            if target.startswith(b"/"):
                resolved = []
            parts = [p for p in target.split(b"/") if p and p != b"."] + parts
            continue
        resolved.append(part)
    return lookup(store, root, b"/".join(resolved))


def walk_key(path: bytes) -> list[bytes]:
    """Sort key giving walk() order: parents first, names sorted by bytes per directory."""
    return path.split(b"/")
