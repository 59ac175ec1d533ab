"""Discarding pending changes: `restore` (those at and under some paths) and `reset`
(all of them, optionally onto another layer). Both save what they discard first
as a snapshot (snapshots.py) that `layerctl undo` brings back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.errors import BadInput, Conflict
from layerctl.store.diff import ADDED, Change
from layerctl.store.journal import operation
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR

from . import links
from .changes import BaseTree
from .drivers import driver_for
from .lifecycle import refuse_if_running
from .snapshots import snapshot
from .state import Container, base, locked, resolve
from .worktree import normalize_paths, pending, under
from .writeback import (
    GroupLinks,
    apply_meta_at,
    meta_only_dir,
    restore_entry,
    settle_parents,
    writing_back,
)

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def _parent_gone(path: bytes, parent: bytes) -> Conflict:
    return Conflict(f"cannot restore /{path.decode('utf-8', 'replace')}: its parent "
                    f"/{parent.decode('utf-8', 'replace')} is gone too; restore the parent")


def restore(store: Store, ref: str, paths: list[str]) -> list[Change]:
    """Discard the pending changes at and under `paths`; returns what was discarded."""
    c = resolve(store, ref)
    driver = driver_for(c)
    driver.refuse_changes(c, "restore files of")
    wanted = normalize_paths(paths)
    if not wanted:
        raise BadInput("restore needs at least one path")
    if any(not w for w in wanted):
        raise BadInput("restore of / would discard everything: use `layerctl reset`")
    with locked(store, c):
        p = pending(store, c)
        discard = [ch for ch in p.changes if under(ch.path, wanted)]
        by_path = {ch.path: ch for ch in p.changes}
        for w in wanted:
            parent = w.rpartition(b"/")[0]
            while parent:
                ch = by_path.get(parent)
                if ch is not None and (ch.new is None or ch.new.kind != DIR):
                    raise _parent_gone(w, parent)
                parent = parent.rpartition(b"/")[0]
        if not discard:
            return []
        bt = BaseTree(store, read_layer(store, p.base_id).root)
        plan: list[Change] = []
        replaced: list[bytes] = []
        for ch in discard:  # walk order: parents first
            if any(ch.path.startswith(r + b"/") for r in replaced):
                continue
            parent = ch.path.rpartition(b"/")[0]
            if ch.status != ADDED and not p.view.is_dir(parent):
                raise _parent_gone(ch.path, parent)
            plan.append(ch)
            if not meta_only_dir(ch):
                replaced.append(ch.path)
        with operation(f"restore {c.name}"):
            snapshot(store, c, p, f"before restore in {c.name}")
        groups = GroupLinks(links.load(store, p.base_id, bt.root), by_path,
                            [ch.path for ch in plan if not meta_only_dir(ch)])
        with writing_back(store, c, "restore", "restored") as tree:
            for ch in plan:
                if not meta_only_dir(ch):
                    restore_entry(store, bt, tree, ch, groups)
            for ch in reversed(plan):  # directories' own metadata last, children first
                if meta_only_dir(ch) and ch.old is not None:
                    apply_meta_at(tree.dir_fd(ch.path), None, ch.old)
            settle_parents(tree, bt, plan, discard, p.changes, driver.rootless_map(store, c))
    return discard


def reset(store: Store, ref: str, layer: str | None = None) -> tuple[Container, str]:
    """Move the container to `layer` (default: its base) and discard every pending
    change, saved first as a snapshot `layerctl undo` brings back."""
    from layerctl.images import resolve as resolve_layer

    c = resolve(store, ref)
    driver = driver_for(c)
    driver.refuse_changes(c, "reset")
    with operation(f"reset {c.name}"), locked(store, c):
        # Its processes would keep writing into a tree that is being replaced (vfs:
        # removed under them, the writes lost) or an upper dir cleared under them.
        refuse_if_running(store, c, "reset")
        old = base(store, c)
        target = resolve_layer(store, layer) if layer else old
        read_layer(store, target)  # must be a layer
        snapshot(store, c, pending(store, c), f"before reset of {c.name}")
        driver.reset(store, c, old, target)
    return c, target
