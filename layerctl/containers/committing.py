"""Commit: a container's pending changes (all, some paths, or chosen hunks) become a
layer on its base, and the base moves there.

`apply_changes_to` is the one way a container's changes are written into a tree:
commit, the snapshots of undo and stash (snapshots.py) and `export` use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.beneath import Changed
from layerctl.errors import Conflict, LayerctlError
from layerctl.store.diff import DELETED, Change
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import EMPTY_BLOB
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta
from layerctl.store.objects import BLOB
from layerctl.words import path_text

from . import links
from .changes import Scan
from .configedit import apply_changes
from .state import locked, resolve
from .worktree import Pending, normalize_paths, pending, select

if TYPE_CHECKING:
    from layerctl.store.fstree import DirRef
    from layerctl.store.objects import PackWriter
    from layerctl.store.repo import Store

    from .hunks import Chooser  # imports the patch renderer: only `commit --patch` needs it


class NothingToCommit(LayerctlError):
    """The container has no pending changes (for the selected paths)."""


@dataclass
class CommitResult:
    layer_id: str
    changes: list[Change]
    remaining: int


def commit(
    store: Store,
    ref: str,
    message: str = "",
    author: str | None = None,
    instructions: list[str] | None = None,
    tag: str | None = None,
    paths: tuple[str, ...] | list[str] = (),
    allow_empty: bool = False,
    choose: Chooser | None = None,
) -> CommitResult:
    """Turn the container's changes (all, or those under `paths`, or what `choose`
    picks of them: hunk staging, containers/hunks.py) into a layer on its base, move
    the base there and optionally tag it. The upper dir / rootfs is not touched:
    committed changes simply stop differing from the new base."""
    from layerctl.store.journal import operation

    with operation(f"commit {ref}"):  # the container's base and the tag: one undo
        return _commit(store, ref, message, author, instructions, tag, paths, allow_empty,
                       choose)


def _commit(store: Store, ref: str, message: str, author: str | None,
            instructions: list[str] | None, tag: str | None, paths: tuple[str, ...] | list[str],
            allow_empty: bool, choose: Chooser | None) -> CommitResult:
    from layerctl.identity import author_or_default
    from layerctl.images import parse_name, tag_new_layer


    c = resolve(store, ref)
    who = author_or_default(author)
    name = parse_name(tag) if tag else None
    selected_paths = normalize_paths(paths) if paths else None
    with locked(store, c):
        p = pending(store, c)
        base_id = p.base_id
        layer = read_layer(store, base_id)
        changes = select(p.changes, selected_paths) if selected_paths is not None else p.changes
        parts: list[tuple[Change, bytes]] = []
        if choose is not None:
            changes, parts = _chosen(store, p, choose)
            selected_paths = [ch.path for ch in changes] + [ch.path for ch, _ in parts]
        config = apply_changes(layer.config, list(instructions or []))
        if not changes and not parts and not instructions and not allow_empty:
            if choose is not None:
                raise NothingToCommit("nothing chosen to commit")
            if selected_paths is not None and p.changes:
                shown = ", ".join(path_text(s) for s in selected_paths)
                raise NothingToCommit(f"nothing to commit under {shown} in container {c.name}")
            raise NothingToCommit(f"nothing to commit: container {c.name} has no changes")
        editor = TreeEditor(store, layer.root)
        with store.pack_writer() as writer:
            size = apply_changes_to(editor, writer, p, changes, "committed")
            for ch, data in parts:  # files committed in part: their blob is made here
                assert ch.new is not None  # hunks apply to a changed file only
                editor.set_file(ch.path, ch.new.replace(size=len(data)), writer.add(BLOB, data))
                size += len(data)
            if selected_paths is None and p.scan.root is not None:
                editor.set_dir(b"", p.scan.root)
            new_root = editor.write(writer)
            writer.finish()
        store.landed()
        faults.point("commit.write-layer")
        created_by = f"layerctl commit {c.name}"
        if instructions:
            created_by += " -c " + " -c ".join(instructions)
        from layerctl.importer import commit_root  # pulls in the tar writer: only here

        new_id = commit_root(store, new_root, layer.root, base_id, config, who, message,
                             created_by, size)
        _save_links(store, new_id, base_id, layer.root, p.scan, changes,
                    full=selected_paths is None)
        faults.point("commit.move-base")
        store.set_ref(c.ref, base_id, new_id, f"commit container {c.name}")
    if name is not None:
        # The container is on the new layer now: a tag that cannot move must not
        # read as a failed commit (the changes are no longer pending).
        faults.point("commit.move-tag")
        tag_new_layer(store, name, new_id, f"committed container {c.name} as")
    return CommitResult(new_id, changes + [ch for ch, _ in parts],
                        len(p.changes) - len(changes))


def _chosen(store: Store, p: Pending, choose: Chooser) -> tuple[list[Change], list[tuple[
        Change, bytes]]]:
    """(changes committed whole, with what they need; (change, content) committed in
    part) from the user's choices over the pending patches."""
    from .hunks import patches

    whole, parts = [], []
    for choice in choose(patches(store, p)):
        ch = choice.patch.change
        if choice.hunks is None:
            whole.append(ch.path)
        elif choice.hunks:
            parts.append((ch, choice.patch.partial(choice.hunks)))
    partial = {ch.path for ch, _ in parts}
    wanted = set(whole)
    # Parents and hardlink partners come along (select), never a chosen path's
    # descendants that were not chosen themselves.
    needed = [ch for ch in select(p.changes, sorted(wanted | partial))
              if ch.path in wanted or (ch.path not in partial and not any(
                  ch.path.startswith(w + b"/") for w in wanted | partial)
                  ) or _gone_with(ch, p.changes, wanted)]
    return [ch for ch in needed if ch.path not in partial], parts


def _gone_with(ch: Change, changes: list[Change], wanted: set[bytes]) -> bool:
    """A change under a chosen deleted directory goes with it."""
    parent = ch.path.rpartition(b"/")[0]
    while parent:
        if parent in wanted and any(c.path == parent and c.status == DELETED for c in changes):
            return True
        parent = parent.rpartition(b"/")[0]
    return False


def apply_changes_to(editor: TreeEditor, writer: PackWriter, p: Pending, changes: list[Change],
                     doing: str) -> int:
    """Apply `changes` (from `p`'s scan) onto `editor`, writing new content into
    `writer`; returns the bytes of regular files written. `doing` names the
    operation in errors ("committed", "exported")."""
    size = 0
    writer.add(BLOB, b"")
    for ch in changes:
        if ch.status == DELETED:
            editor.delete(ch.path)
            continue
        meta = ch.new
        assert meta is not None  # every status but DELETED has a new entry
        if meta.kind == DIR:
            editor.set_dir(ch.path, meta)
            continue
        obs = p.scan.observed.get(ch.path)
        if obs is None:  # a hardlink member whose only change is its link
            assert ch.new_blob is not None  # its content is the base's
            editor.set_file(ch.path, meta, ch.new_blob)
            continue
        # Read beneath the container's tree, from the inode the scan saw: what a
        # process in it swapped in since (a symlink to a host file, a FIFO, a
        # device) is never read, only reported as changed.
        tree, rel = p.view.tree_of(obs.real)
        try:
            if meta.kind == FILE:
                size += meta.size

                def done(sha: bytes, path: bytes = ch.path, meta: Meta = meta) -> None:
                    editor.set_file(path, meta, sha)

                faults.point("commit.before-read")
                fd = tree.open_file(rel, obs.st)
                writer.add_file(fd, meta.size, done, expect=obs.st, label=ch.path)
            elif meta.kind == SYMLINK:
                editor.set_file(ch.path, meta, writer.add(BLOB, tree.readlink(rel)))
            else:
                editor.set_file(ch.path, meta, EMPTY_BLOB)
        except Changed as e:
            raise _changed_while(e, doing) from None
        except OSError as e:
            raise Conflict(f"cannot read {path_text(ch.path)}: {e.strerror or e}; "
                           "is it changing? try again") from None
    try:
        writer.drain()
    except Changed as e:
        raise _changed_while(e, doing) from None
    except OSError as e:
        raise Conflict(f"a file changed while being {doing} ({e}); try again") from None
    return size


def _changed_while(e: Changed, doing: str) -> Conflict:
    return Conflict(f"{path_text(os.fsencode(e.path))} changed while being {doing}; try again")


def _save_links(store: Store, new_id: str, base_id: str, base_root: DirRef, sc: Scan,
                changes: list[Change], full: bool) -> None:
    if full and sc.groups is not None:
        links.save(store, new_id, sc.groups)
        return
    involved = bool(sc.touched_groups) or any(
        (ch.new is not None and ch.new.link) or (ch.old is not None and ch.old.link)
        for ch in changes
    )
    if not involved:
        links.save(store, new_id, links.load(store, base_id, base_root))
    # else: computed by a walk when first needed
