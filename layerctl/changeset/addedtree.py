"""What a tar adds, as the applier (applier.py) keeps it beside the TreeEditor: a tree of
the paths this tar wrote (a directory, or a non-directory's inode that hardlinks
share), so that whiteouts hide only the lower tree and hardlink groups can be rewritten
in the store's canonical form once the tar is read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.changeset.tarentry import join
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import RECORD, DirRef, lookup, walk_key
from layerctl.store.meta import DIR, Meta, parse_record
from layerctl.store.names import unmangle

if TYPE_CHECKING:
    from layerctl.store.types import TreeReader

__all__ = ["Inode", "Node", "canonical", "dirs", "find", "fix_links", "lower_groups", "members",
           "put"]


class Inode:
    """A non-directory's content; hardlinks share one."""

    __slots__ = ("meta", "blob", "paths", "lower_key")

    def __init__(self, meta: Meta, blob: bytes | None, lower_key: bytes | None = None) -> None:
        self.meta = meta  # link is always None here
        self.blob = blob  # None while the content is being hashed
        self.paths: list[bytes] = []  # names this tar gave it (hardlink groups only)
        self.lower_key = lower_key  # the lower tree's group (its first member), if from there


class Node:
    """What this tar put at a path: a directory (kids) or a non-directory (inode)."""

    __slots__ = ("kids", "inode", "explicit")

    def __init__(self, inode: Inode | None = None, explicit: bool = True) -> None:
        self.kids: dict[bytes, Node] | None = None if inode is not None else {}
        self.inode = inode
        self.explicit = explicit  # False: a parent created (or kept) for its children


def find(tree: Node, path: bytes) -> Node | None:
    """What this tar put at `path` below `tree`, if anything."""
    node = tree
    if not path:
        return node
    for part in path.split(b"/"):
        if node.kids is None:
            return None
        nxt = node.kids.get(part)
        if nxt is None:
            return None
        node = nxt
    return node


def put(tree: Node, path: bytes, new: Node) -> None:
    """`new` at `path` below `tree`; a non-directory on the way becomes a directory."""
    node = tree
    parts = path.split(b"/")
    for part in parts[:-1]:
        assert node.kids is not None  # the root is a directory, and so is each `nxt`
        nxt = node.kids.get(part)
        if nxt is None or nxt.kids is None:
            nxt = node.kids[part] = Node(explicit=False)
        node = nxt
    assert node.kids is not None
    node.kids[parts[-1]] = new


def dirs(tree: Node) -> list[bytes]:
    """The directories this tar made or listed, the root (b"") first."""
    out = [b""]
    stack = [(b"", tree)]
    while stack:
        path, node = stack.pop()
        assert node.kids is not None  # only directories are stacked
        for name, kid in node.kids.items():
            if kid.kids is not None:
                out.append(join(path, name))
                stack.append((out[-1], kid))
    return out


def members(tree: Node, inode: Inode) -> list[bytes]:
    """The names this tar gave `inode` that still hold it."""
    out = []
    for path in dict.fromkeys(inode.paths):
        node = find(tree, path)
        if node is not None and node.inode is inode:
            out.append(path)
    return out


def canonical(editor: TreeEditor, paths: list[bytes], meta: Meta, blob: bytes) -> None:
    """A hardlink group in the store's canonical form (see snapshot.DirImporter): the
    first member in walk order has link=None, the others link=<first>."""
    paths = sorted(set(paths), key=walk_key)
    if not paths:
        return
    first = paths[0]
    editor.set_file(first, meta, blob)
    linked = meta.replace(link=first)
    for path in paths[1:]:
        editor.set_file(path, linked, blob)


def fix_links(editor: TreeEditor, tree: Node, groups: list[Inode], lower: DirRef | None,
              lower_inodes: dict[bytes, Inode]) -> None:
    """Rewrite every hardlink group the tar touched in canonical form: `groups`, the
    inodes it gave hardlinks, and, with `lower` (the tree before the tar, when the tar
    replaced, deleted or hardlinked a lower entry), the lower tree's groups it touched
    (`lower_inodes`: those it hardlinked, by first member)."""
    for group in groups:
        if group.lower_key is None:
            assert group.blob is not None  # set when the writer was drained
            canonical(editor, members(tree, group), group.meta, group.blob)
    if lower is None:
        return
    store = editor.store
    stored = lower_groups(store, lower)
    for key in sorted(stored.keys() | lower_inodes.keys(), key=walk_key):
        paths = stored.get(key, [key])
        alive = [p for p in paths if _lower_alive(editor, tree, p)]
        inode = lower_inodes.get(key)
        extra = members(tree, inode) if inode is not None else []
        if not extra and len(alive) == len(paths):
            continue  # untouched
        if inode is not None:
            assert inode.blob is not None  # a lower inode's blob is the stored one
            meta, blob = inode.meta, inode.blob
        else:
            found = lookup(store, lower, key)
            if found is None or isinstance(found[1], DirRef):
                continue  # a corrupt lower group; leave it as it was
            meta, blob = found[0].without_link(), found[1]
        canonical(editor, alive + extra, meta, blob)


def _lower_alive(editor: TreeEditor, tree: Node, path: bytes) -> bool:
    """True when the lower tree's non-directory at `path` is still there, untouched."""
    if find(tree, path) is not None:
        return False
    found = editor.get(path)
    return found is not None and found[0].kind != DIR


def lower_groups(store: TreeReader, root: DirRef) -> dict[bytes, list[bytes]]:
    """first member -> all members, for each hardlink group of a stored tree.

    Reads only the metadata trees and records, not the rootfs trees.
    """
    links: dict[bytes, list[bytes]] = {}
    stack = [(b"", root.meta)]
    while stack:
        prefix, meta_tree = stack.pop()
        for name, _mode, sha in store.read_tree(meta_tree):
            if name == RECORD:
                _own, children = parse_record(store.read_blob(sha))
                for child, meta in children.items():
                    if meta.link is not None:
                        links.setdefault(meta.link, []).append(join(prefix, child))
            else:
                stack.append((join(prefix, unmangle(name)), sha))
    return {first: [first, *rest] for first, rest in links.items()}
