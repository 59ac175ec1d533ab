"""`layerctl stash`: a container's pending changes saved as a snapshot and cleared,
then written back (git stash for containers).

Each entry is a snapshot layer (containers/snapshots.py) on the base it was taken
on, under refs/stash/<container id>/<ns>; stash@{0} is the newest. Applying
writes the stash's differences from its base into the container: onto the same
base directly, onto a newer one only where the base left those paths alone and
nothing pending touches them (otherwise a Conflict names the paths: a real merge
is rebase's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import BadInput, Conflict, LayerctlError, NotFound
from layerctl.store.journal import operation
from layerctl.store.layers import read_layer
from layerctl.words import path_text

from .changes import BaseTree
from .drivers import driver_for
from .lifecycle import refuse_if_running
from .snapshots import STASH_PREFIX, apply_tree, changed_paths, has_changes, snapshot
from .state import Container, base, locked, resolve
from .worktree import pending, under

if TYPE_CHECKING:
    from layerctl.store.repo import Store


class NothingToStash(LayerctlError):
    """The container has no pending changes."""


@dataclass
class StashEntry:
    index: int
    ref: str
    layer_id: str
    message: str
    base_id: str


def entries(store: Store, c: Container) -> list[StashEntry]:
    refs = store.refs_under(f"{STASH_PREFIX}{c.id}")
    out = []
    for i, (ref, sid) in enumerate(sorted(refs.items(), key=lambda kv: _seq(kv[0]),
                                          reverse=True)):
        layer = read_layer(store, sid)
        out.append(StashEntry(i, ref, sid, layer.message, layer.parent or ""))
    return out


def _seq(ref: str) -> int:
    tail = ref.rsplit("/", 1)[1]
    return int(tail) if tail.isdigit() else 0


def _entry(store: Store, c: Container, index: int) -> StashEntry:
    found = entries(store, c)
    if not found:
        raise NotFound(f"container {c.name} has no stash entries")
    if not 0 <= index < len(found):
        raise NotFound(f"stash@{{{index}}} does not exist: container {c.name} has "
                       f"{len(found)} stash entries")
    return found[index]


def push(store: Store, ref: str, message: str = "") -> tuple[Container, str]:
    """Save the container's pending changes as a stash entry and clear them."""
    c = resolve(store, ref)
    driver = driver_for(c)
    driver.refuse_changes(c, "stash changes of")
    with operation(f"stash push {c.name}"), locked(store, c):
        refuse_if_running(store, c, "stash changes of")
        p = pending(store, c)
        if not has_changes(p):
            raise NothingToStash(f"no pending changes to stash in container {c.name}")
        text = message or f"WIP on {c.name}: {p.base_id[:12]}"
        sid = snapshot(store, c, p, text, prefix=STASH_PREFIX)
        faults.point("stash.before-clear")
        driver.reset(store, c, p.base_id, p.base_id)
    return c, sid


def apply(store: Store, ref: str, index: int = 0, drop: bool = False) -> StashEntry:
    """Write stash@{index} back into the container (and with `drop`, remove it)."""
    c = resolve(store, ref)
    driver_for(c).refuse_changes(c, "apply a stash to")
    with operation(f"stash {'pop' if drop else 'apply'} {c.name}"), locked(store, c):
        refuse_if_running(store, c, "apply a stash to")
        e = _entry(store, c, index)
        stash_base = read_layer(store, e.base_id)
        stash_root = read_layer(store, e.layer_id).root
        current_id = base(store, c)
        current_root = read_layer(store, current_id).root
        wanted = changed_paths(store, stash_base.root, stash_root)
        p = pending(store, c)
        paths = [ch.path for ch in wanted]
        busy = [ch.path for ch in p.changes
                if under(ch.path, paths) or any(under(w, [ch.path]) for w in paths)]
        if busy:
            shown = ", ".join(path_text(x) for x in busy[:5])
            raise Conflict(f"cannot apply stash@{{{index}}}: pending changes touch the same "
                           f"paths ({shown}); commit or stash them first")
        if current_id != e.base_id:
            old, new = BaseTree(store, stash_base.root), BaseTree(store, current_root)
            moved = [x for x in paths if old.entry(x) != new.entry(x)]
            if moved:
                shown = ", ".join(path_text(x) for x in moved[:5])
                raise BadInput(f"cannot apply stash@{{{index}}}: it was made on "
                               f"{e.base_id[:12]} and the container's base changed "
                               f"{shown} since")
        snapshot(store, c, p, f"before stash apply in {c.name}")
        faults.point("stash.before-apply")
        apply_tree(store, c, stash_base.root, stash_root, settle=current_root)
        if drop:
            faults.point("stash.before-drop")
            store.delete_ref(e.ref, e.layer_id, f"stash pop {c.name}")
    return e


def drop(store: Store, ref: str, index: int = 0) -> StashEntry:
    c = resolve(store, ref)
    with operation(f"stash drop {c.name}"):
        e = _entry(store, c, index)
        store.delete_ref(e.ref, e.layer_id, f"stash drop {c.name}")
    return e
