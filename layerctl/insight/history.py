"""The layer chain of an image, layer or container as a list of steps, each with the
changes its changeset tar ships (store.diff of parent and layer; a container's pending
changes as a last "(uncommitted)" step). Shared by the analyses that walk history."""

from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter
from typing import TYPE_CHECKING

from layerctl.errors import BadInput
from layerctl.record import Record
from layerctl.store.diff import ADDED, CHANGED, DELETED, Change, diff
from layerctl.store.fstree import DirRef
from layerctl.store.layers import Layer
from layerctl.store.meta import Meta

if TYPE_CHECKING:
    from layerctl.store.repo import Store

UNCOMMITTED = "(uncommitted)"


class Target(Record):
    """What the user named: the layers base first, plus a container's pending changes."""

    __slots__ = ("name", "layers", "pending")

    def __init__(self, name: str, layers: list[Layer], pending: object | None = None) -> None:
        self.name = name
        self.layers = layers
        self.pending = pending  # containers.worktree.Pending

    @property
    def top_id(self) -> str | None:
        return self.layers[-1].id if self.layers else None


class Step(Record):
    __slots__ = ("index", "layer", "parent_root", "changes")

    def __init__(self, index: int, layer: Layer | None, parent_root: DirRef | None,
                 changes: list[Change]) -> None:
        self.index = index
        self.layer = layer  # None: the container's pending changes
        self.parent_root = parent_root  # the tree the changes apply to (None: empty fs)
        self.changes = changes

    @property
    def label(self) -> str:
        return self.layer.id[:12] if self.layer else UNCOMMITTED

    @property
    def id(self) -> str:
        return self.layer.id if self.layer else UNCOMMITTED

    @property
    def summary(self) -> str:
        """The layer's message, else its Created-By (what `history` shows as CREATED BY)."""
        if self.layer is None:
            return "pending changes"
        return self.layer.summary or self.layer.created_by


def resolve_target(store: Store, ref: str) -> Target:
    """An image / layer reference, else a container (its pending changes count).

    Images first: the containers package costs 60 ms to import, too much for a
    command that is otherwise a few tree reads. A container whose name is also an
    image's is reached by its id."""
    from layerctl.errors import InvalidName, NotFound
    from layerctl.images import chain, resolve

    try:
        return Target(ref, chain(store, resolve(store, ref)))
    except (NotFound, InvalidName) as e:
        from layerctl.containers.state import find

        container = find(store, ref)
        if container is None:
            raise NotFound(f"no such image, layer or container: {ref}") from e
    return container_target(store, container)


def container_target(store: Store, container: object) -> Target:
    """A container's layers and its pending changes (the last, uncommitted step)."""
    from layerctl.containers.worktree import pending
    from layerctl.images import chain

    p = pending(store, container)
    return Target(container.name, chain(store, p.base_id), p)


def steps(store: Store, target: Target, start: int = 0) -> Iterator[Step]:
    """Each layer's changes against its parent, bottom first (from layer `start`);
    then the pending step."""
    parent = target.layers[start - 1].root if start > 0 else None
    for i, layer in enumerate(target.layers[start:], start):
        yield Step(i, layer, parent, layer_changes(store, layer, parent))
        parent = layer.root
    if target.pending is not None:
        yield Step(len(target.layers), None, parent, list(target.pending.changes))


def layer_changes(store: object, layer: Layer, parent: DirRef | None) -> list[Change]:
    """store.diff of a layer against its parent's root, kept in the store's cache by
    layer id (a layer fixes both trees), so each layer is diffed once per store."""
    from layerctl.store import cache

    kept = cache.load(store, "changes", layer.id)
    if isinstance(kept, list):
        try:
            return [_change(t) for t in kept]
        except (TypeError, ValueError):
            pass  # malformed: recompute
    changes = list(diff(store, parent, layer.root))
    cache.save(store, "changes", layer.id, [_tuple(c) for c in changes])
    return changes


# Meta's fields in its constructor's order, read by C code (a layer's changes are kept
# in thousands): _meta() builds the Meta back from them.
_META_FIELDS = attrgetter("kind", "mode", "uid", "gid", "mtime_ns", "size", "rdev", "xattrs",
                          "link")


def _tuple(c: Change) -> tuple:
    old, new = c.old, c.new
    return (c.path, c.status, None if old is None else _META_FIELDS(old),
            None if new is None else _META_FIELDS(new), c.old_blob, c.new_blob, c.opaque)


def _change(t: tuple) -> Change:
    path, status, old, new, old_blob, new_blob, opaque = t
    if not isinstance(path, bytes) or status not in (ADDED, CHANGED, DELETED):
        raise ValueError("not a change")
    return Change(path, status, _meta(old), _meta(new), old_blob, new_blob, bool(opaque))


def _meta(t: tuple | None) -> Meta | None:
    return None if t is None else Meta(*t)


def ancestor_index(target: Target, layer_id: str) -> int:
    """Position of `layer_id` in the target's chain; BadInput if it is not in it."""
    for i, layer in enumerate(target.layers):
        if layer.id == layer_id:
            return i
    raise BadInput(f"{layer_id[:12]} is not a layer of {target.name}")
