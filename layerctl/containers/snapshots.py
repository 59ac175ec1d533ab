"""A container's pending changes saved as a layer no tag names, and put back.

A snapshot is what `commit` would write (the same tree code: whiteouts and opaque
directories become deletions in a full tree) with the container's base as parent,
kept reachable by a hidden ref: refs/undo/<container id>/<ns> for the snapshots
`reset`, `restore` and `undo` take before they discard anything, refs/stash/...
for `stash`. Putting one back writes the differences between two trees into the
container through the same fd-based steps `restore` uses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.store.diff import ADDED, CHANGED, DELETED, Change, diff
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef, read_dir
from layerctl.store.journal import record_snapshot
from layerctl.store.layers import read_layer

from .changes import BaseTree
from .committing import apply_changes_to
from .drivers import driver_for
from .state import Container, base
from .worktree import Pending, pending
from .writeback import apply_meta_at, meta_only_dir, restore_entry, settle_parents, writing_back

if TYPE_CHECKING:
    from layerctl.store.repo import Store

UNDO_PREFIX = "refs/undo/"
STASH_PREFIX = "refs/stash/"


def has_changes(p: Pending) -> bool:
    return bool(p.changes) or p.scan.root is not None


def write_snapshot(store: Store, p: Pending, message: str) -> str:
    """The layer holding the base plus every pending change of `p`."""
    from layerctl.identity import default_author
    from layerctl.importer import commit_root

    layer = read_layer(store, p.base_id)
    editor = TreeEditor(store, layer.root)
    with store.pack_writer() as writer:
        size = apply_changes_to(editor, writer, p, p.changes, "saved")
        if p.scan.root is not None:
            editor.set_dir(b"", p.scan.root)
        root = editor.write(writer)
        writer.finish()
    store.landed()
    return commit_root(store, root, layer.root, p.base_id, layer.config, default_author(),
                       message, "layerctl snapshot", size)


def snapshot(store: Store, c: Container, p: Pending, message: str,
             prefix: str = UNDO_PREFIX) -> str:
    """Save `c`'s pending changes (none: the base itself) under a hidden ref and
    journal them for `undo`; returns the snapshot's layer id. The container's lock
    is held by the caller."""
    if has_changes(p):
        sid = write_snapshot(store, p, message)
        faults.point("undo.snapshot-written")
        store.set_ref(f"{prefix}{c.id}/{time.time_ns()}", None, sid, f"snapshot {message}")
    else:
        sid = p.base_id
    record_snapshot(store.root, c.id, sid, p.base_id, message)
    faults.point("undo.snapshot-recorded")
    return sid


def changed_paths(store: Store, old: DirRef, new: DirRef) -> list[Change]:
    return list(diff(store, old, new))


def apply_tree(store: Store, c: Container, old: DirRef, new: DirRef,
               settle: DirRef | None = None) -> list[Change]:
    """Make the container's paths that differ between trees `old` and `new` what they
    are in `new` (the container holds `old`'s entries there); `settle`: the tree whose
    directory times the untouched parents get back (default `old`). Returns the
    changes applied. The container's lock is held by the caller."""
    changes = changed_paths(store, old, new)
    new_root = read_dir(store, new).own
    old_root = read_dir(store, old).own
    if not changes and new_root == old_root:
        return []
    bt = BaseTree(store, new)
    # restore_entry recreates an entry from `bt` unless the change says ADDED (then
    # it only removes): in these terms a deletion is the ADDED case.
    plan = []
    replaced: list[bytes] = []
    for ch in changes:
        if any(ch.path.startswith(r + b"/") for r in replaced):
            continue
        step = Change(ch.path, ADDED if ch.status == DELETED else CHANGED, ch.old, ch.new,
                      ch.old_blob, ch.new_blob, ch.opaque)
        plan.append(step)
        if not meta_only_dir(ch):
            replaced.append(ch.path)
    with writing_back(store, c, "write back", "written back") as tree:
        for step in plan:
            if not meta_only_dir(step):
                faults.point("undo.apply-entry")
                restore_entry(store, bt, tree, step)
        for step in reversed(plan):
            if meta_only_dir(step) and step.new is not None:
                apply_meta_at(tree.dir_fd(step.path), None, step.new)
        settle_parents(tree, BaseTree(store, settle or old), plan, plan, plan,
                       driver_for(c).rootless_map(store, c))
        if new_root != old_root:  # last: every step above changes its times
            apply_meta_at(tree.dir_fd(b""), None, new_root)
    return changes


def bring_back(store: Store, c: Container, snapshot_id: str, base_id: str,
               label: str) -> None:
    """Put `c` back to exactly a snapshot (`snapshot_id` == `base_id`: a clean one):
    on its base with its pending changes. What the container holds now is
    snapshotted first (nothing is lost). The container's lock is held."""
    snapshot(store, c, pending(store, c), label)
    driver_for(c).reset(store, c, base(store, c), base_id)
    faults.point("undo.before-apply")
    if snapshot_id != base_id:
        apply_tree(store, c, read_layer(store, base_id).root,
                   read_layer(store, snapshot_id).root)
