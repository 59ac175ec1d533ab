"""Editing a layer's filesystem: load only the directories on edited paths,
write back only those, share every other subtree with the base by id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.errors import BadInput
from layerctl.store.fstree import Dir, DirRef, read_dir, write_dir
from layerctl.store.meta import DIR, Meta
from layerctl.store.objects import PackWriter

if TYPE_CHECKING:
    from layerctl.store.types import TreeReader


class _Node:
    __slots__ = ("own", "files", "dirs", "ref")

    def __init__(self, own: Meta, ref: DirRef | None = None) -> None:
        self.own = own
        self.files: dict[bytes, tuple[Meta, bytes]] = {}
        self.dirs: dict[bytes, _Node | DirRef] = {}
        self.ref = ref  # the stored directory this node still equals, if any


def split_path(path: bytes) -> list[bytes]:
    parts = [p for p in path.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise BadInput(f"path {path.decode('utf-8', 'replace')!r} leaves the root")
    return parts


class TreeEditor:
    """A copy-on-write view of a stored directory tree (or of an empty one)."""

    def __init__(
        self, store: TreeReader, base: DirRef | None, root_meta: Meta | None = None
    ) -> None:
        self.store = store
        if base is None:
            self.root = _Node(root_meta or Meta(DIR, 0o755))
        else:
            self.root = self._load(base)
            if root_meta is not None:
                self.root.own = root_meta
                self.root.ref = None

    def _load(self, ref: DirRef) -> _Node:
        d = read_dir(self.store, ref)
        node = _Node(d.own, ref)
        node.files = dict(d.files)
        node.dirs = dict(d.dirs)
        return node

    def _child_dir(self, node: _Node, name: bytes) -> _Node | None:
        sub = node.dirs.get(name)
        if isinstance(sub, DirRef):
            sub = node.dirs[name] = self._load(sub)
        return sub

    def _walk(self, parts: list[bytes], touch: bool) -> _Node | None:
        node: _Node | None = self.root
        chain = [self.root]
        for part in parts:
            node = self._child_dir(chain[-1], part)
            if node is None:
                return None
            chain.append(node)
        if touch:
            for n in chain:
                n.ref = None
        return node

    # -- queries ----------------------------------------------------------

    def get(self, path: bytes) -> tuple[Meta, bytes | None] | None:
        """(meta, blob id) of a file, (meta, None) of a directory, None if absent."""
        parts = split_path(path)
        if not parts:
            return self.root.own, None
        parent = self._walk(parts[:-1], touch=False)
        if parent is None:
            return None
        name = parts[-1]
        if name in parent.files:
            return parent.files[name]
        sub = self._child_dir(parent, name)
        return (sub.own, None) if sub is not None else None

    def own(self, path: bytes) -> Meta:
        """A directory's own metadata."""
        found = self.get(path)
        if found is None or found[0].kind != DIR:
            raise KeyError(path)
        return found[0]

    def is_dir(self, path: bytes) -> bool:
        found = self.get(path)
        return found is not None and found[0].kind == DIR

    def children(self, path: bytes) -> list[bytes]:
        node = self._walk(split_path(path), touch=False)
        return sorted([*node.files, *node.dirs]) if node else []

    # -- edits --------------------------------------------------------------

    def _parent(self, path: bytes) -> tuple[_Node, bytes]:
        parts = split_path(path)
        if not parts:
            raise BadInput("cannot replace the root directory")
        parent = self._walk(parts[:-1], touch=True)
        if parent is None:
            missing = b"/".join(parts[:-1]).decode("utf-8", "replace")
            raise BadInput(f"parent directory /{missing} does not exist")
        return parent, parts[-1]

    def set_file(self, path: bytes, meta: Meta, blob: bytes) -> None:
        """Create or replace a non-directory entry (replacing a directory removes it)."""
        parent, name = self._parent(path)
        parent.dirs.pop(name, None)
        parent.files[name] = (meta, blob)

    def put_file(self, path: bytes, meta: Meta, blob: bytes
                 ) -> tuple[tuple[Meta, bytes | None] | None, dict[bytes, tuple[Meta, bytes]],
                            bytes, tuple[Meta, bytes]]:
        """set_file in one walk, giving (what get() gave before, the dict that now holds
        the entry, its name there, the entry): a tar's file gets its blob id later, and
        if the entry is still that very one, the id goes straight into the dict (no
        second walk)."""
        parent, name = self._parent(path)
        before: tuple[Meta, bytes | None] | None = parent.files.get(name)
        if before is None and name in parent.dirs:
            sub = self._child_dir(parent, name)
            assert sub is not None  # just seen
            before = (sub.own, None)
            del parent.dirs[name]
        entry = parent.files[name] = (meta, blob)
        return before, parent.files, name, entry

    def set_dir(self, path: bytes, meta: Meta) -> None:
        """Create a directory, or set an existing one's metadata (its entries stay)."""
        parts = split_path(path)
        if not parts:
            self.root.own = meta
            self.root.ref = None
            return
        parent, name = self._parent(path)
        parent.files.pop(name, None)
        sub = self._child_dir(parent, name)
        if sub is None:
            parent.dirs[name] = _Node(meta)
        else:
            sub.own = meta
            sub.ref = None

    def delete(self, path: bytes) -> bool:
        """Remove an entry (a directory with everything below it); False if absent."""
        parent, name = self._parent(path)
        found = parent.files.pop(name, None) is not None
        return parent.dirs.pop(name, None) is not None or found

    def clear_dir(self, path: bytes) -> None:
        """Remove every entry below a directory (an opaque directory)."""
        node = self._walk(split_path(path), touch=True)
        if node is None:
            raise BadInput(f"/{path.decode('utf-8', 'replace')} is not a directory")
        node.files.clear()
        node.dirs.clear()

    def write(self, writer: PackWriter) -> DirRef:
        """Write the edited directories; returns the new root."""
        return self._write(self.root, writer)

    def _write(self, node: _Node, writer: PackWriter) -> DirRef:
        if node.ref is not None:
            return node.ref
        d = Dir(node.own, dict(node.files))
        for name, sub in node.dirs.items():
            d.dirs[name] = sub if isinstance(sub, DirRef) else self._write(sub, writer)
        node.ref = write_dir(writer, d)
        return node.ref
