"""Container operations: create, mount, status, commit, restore, reset, rm, inspect.

Over 500 lines, and the next split due (issue 11): lifecycle (create, mount, rm,
inspect), commit and restore/reset share the lock, driver dispatch and the fd-based
write-back helpers kept here, which containers/snapshots.py also uses (the import
contract lists that lazy import as a debt)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.beneath import GONE, Changed, Tree, fd_path
from layerctl.errors import BadInput, Conflict, LayerctlError, NotFound
from layerctl.store.checkout import apply_meta, create_entry
from layerctl.store.diff import ADDED, CHANGED, DELETED, Change, diff
from layerctl.store.edit import TreeEditor, split_path
from layerctl.store.fstree import EMPTY_BLOB, Dir, read_dir
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta, meta_from_stat
from layerctl.store.objects import BLOB
from layerctl.words import path_text, rfc3339_nano

from . import layerdirs, overlay, rootless, vfs
from . import links as links_mod
from .changes import BaseTree, HashCache, Scan, scan
from .configedit import apply_changes
from .links import walk_key
from .state import (
    Container,
    base,
    finish_create,
    load,
    locked,
    new_container,
    resolve,
    save,
    state_dir,
)
from .view import View

if TYPE_CHECKING:
    from layerctl.store.repo import Store

    from .hunks import Chooser  # imports the patch renderer: only `commit --patch` needs it

DRIVERS = ("overlay", "vfs")


class NothingToCommit(LayerctlError):
    """The container has no pending changes (for the selected paths)."""


# -- create / mount / rm ------------------------------------------------------------


def create(
    store: Store, image: str, name: str | None = None, driver: str | None = None
) -> tuple[Container, str]:
    """Create a container on `image` (any layer reference); returns it and a notice
    (non-empty when overlay was wanted but cannot work here, saying why)."""
    from layerctl.images import resolve as resolve_layer

    layer_id = resolve_layer(store, image)
    notice = ""
    if driver is None or driver == "overlay":
        reason = overlay.probe_mount(store.path("cache", "probe"),
                                     store.path("cache", "overlay-probed"))
        if reason:
            if driver == "overlay":
                raise LayerctlError(f"overlay driver unavailable: {reason}")
            notice = f"using the vfs driver: {reason}"
            driver = "vfs"
        else:
            driver = "overlay"
    elif driver not in DRIVERS:
        raise BadInput(f"unknown driver {driver!r}: use overlay or vfs")
    c = new_container(store, image, layer_id, driver, name, notice)
    state = state_dir(store, c.id)
    try:
        links_mod.load(store, layer_id, read_layer(store, layer_id).root)
        faults.point("create.prepare-driver")
        if driver == "overlay":
            layerdirs.stack(store, layer_id)
            overlay.prepare(store, state, layer_id)
            c.lower = layer_id
        else:
            vfs.prepare(store, state, layer_id)
        finish_create(store, c)
    except BaseException:
        with contextlib.suppress(Exception):
            from .state import destroy

            destroy(store, c)
        raise
    return c, notice


def _dirs(store: Store, c: Container) -> dict[str, str]:
    state = state_dir(store, c.id)
    external = c.extra.get("external")
    if external:  # a tracked podman/docker container (oci/engines.py): its engine's dirs
        return {"upper": external["upper"], "work": external.get("work", ""), "merged": ""}
    if c.driver == "overlay":
        return {
            "upper": os.path.join(state, "upper"),
            "work": os.path.join(state, "work"),
            "merged": os.path.join(state, "merged"),
        }
    return {"rootfs": os.path.join(state, "rootfs")}


def is_mounted(store: Store, c: Container) -> bool:
    if c.driver == "overlay":
        return overlay.is_mounted(_dirs(store, c)["merged"])
    return bool(c.extra.get("mounted"))


def root_dir(store: Store, c: Container) -> str:
    """Where the container's filesystem is seen (merged dir or vfs rootfs)."""
    d = _dirs(store, c)
    return d.get("merged") or d["rootfs"]


def _refuse_if_external(c: Container, action: str) -> None:
    """A tracked container's upper dir belongs to its engine: layerctl only reads it."""
    external = c.extra.get("external")
    if external:
        engine = external.get("engine", "its engine")
        raise Conflict(f"container {c.name} tracks {engine} container {external.get('name')}: "
                       f"{action} it with {engine}")


def mount(store: Store, ref: str) -> str:
    c = resolve(store, ref)
    _refuse_if_external(c, "mount")
    with locked(store, c):
        if c.driver == "vfs":
            c.extra["mounted"] = True
            save(store, c)
            return _dirs(store, c)["rootfs"]
        d = _dirs(store, c)
        if overlay.is_mounted(d["merged"]):
            return d["merged"]
        layer_id = base(store, c)
        lower = layerdirs.stack(store, layer_id)
        if c.lower != layer_id:
            # The upper dir holds every change since c.lower, and every layer committed
            # since came from it: over the base's layer dirs it shows the same tree.
            c.lower = layer_id
            save(store, c)
        overlay.mount_overlay(layerdirs.for_mount(store, lower), d["upper"], d["work"],
                              d["merged"])
        return d["merged"]


def _refuse_if_running(store: Store, c: Container, action: str) -> None:
    from layerctl import runtime

    if runtime.status(store, c.id)[0] == "running":
        raise Conflict(f"container {c.name} is running; stop it before you {action} it")


def umount(store: Store, ref: str) -> Container:
    c = resolve(store, ref)
    _refuse_if_external(c, "unmount")
    _refuse_if_running(store, c, "unmount")
    with locked(store, c):
        if c.driver == "vfs":
            c.extra["mounted"] = False
            save(store, c)
        else:
            overlay.unmount(_dirs(store, c)["merged"])
    return c


def remove(store: Store, ref: str, force: bool = False) -> Container:
    from layerctl import runtime

    from .state import destroy

    c = resolve(store, ref, broken_ok=True)
    if runtime.status(store, c.id)[0] == "running" and not force:
        raise Conflict(f"container {c.name} is running; stop it first or use rm -f")
    runtime.forget(store, c.id, force=force)
    with locked(store, c):
        if is_mounted(store, c):
            if not force:
                raise Conflict(f"container {c.name} is mounted; umount it first or use rm -f")
            if c.driver == "overlay":
                overlay.unmount(_dirs(store, c)["merged"])
        destroy(store, c)
        if c.driver == "vfs":  # what destroy's rmtree left: read-only dirs, when rootless
            vfs.remove_tree(state_dir(store, c.id))
    return c


# -- changes ------------------------------------------------------------------------


def view_of(store: Store, c: Container) -> View:
    d = _dirs(store, c)
    if c.driver == "overlay":
        lowers = layerdirs.stack(store, c.lower or base(store, c))
        return View(os.fsencode(d["upper"]), [os.fsencode(p) for p in lowers])
    return View(os.fsencode(d["rootfs"]), None)


@dataclass
class Pending:
    container: Container
    base_id: str
    scan: Scan
    view: View

    @property
    def changes(self) -> list[Change]:
        return self.scan.changes


def pending(store: Store, c: Container, paths: tuple[bytes, ...] | None = None) -> Pending:
    """The container's changes against its base layer, all or for `paths` (re-evaluated
    only there: what a watcher calls when events name those paths)."""
    base_id = base(store, c)
    layer = read_layer(store, base_id)
    view = view_of(store, c)
    state = state_dir(store, c.id)
    hashes = HashCache(os.path.join(state, "hashes"))
    rmap = rootless.load(state) if c.driver == "vfs" else None
    if paths is not None:
        result = scan(store, layer.root, base_id, view, paths, hashes, rmap)
        return Pending(c, base_id, _without_mount_points(result), view)
    if c.driver == "overlay":
        cands = {p for p, _kind in overlay.upper_entries(view.upper)}
        lower_id = c.lower or base_id
        if lower_id != base_id:
            cands.update(ch.path for ch in diff(store, read_layer(store, lower_id).root,
                                                layer.root))
        result = scan(store, layer.root, base_id, view, cands, hashes)
    else:
        cands, label, entries = vfs.candidates(store, state, base_id)
        result = scan(store, layer.root, base_id, view, cands, hashes, rmap)
        vfs.refresh(state, base_id, entries, cands, {ch.path for ch in result.changes},
                    result.observed, label)
    return Pending(c, base_id, _without_mount_points(result), view)


# The mount points every run needs (runtime.py mounts proc, a tmpfs and sysfs there);
# the runtime makes them when the image lacks them. Docker keeps them in an "init"
# layer that diff and commit skip; here they are skipped while they are empty
# directories the base does not have (see docs/design-notes.md).
RUNTIME_MOUNT_POINTS = frozenset({b"dev", b"proc", b"sys"})


def _without_mount_points(result: Scan) -> Scan:
    added = [ch for ch in result.changes if ch.path in RUNTIME_MOUNT_POINTS
             and ch.status == ADDED and ch.new.kind == DIR]
    if not added:
        return result
    skip = {ch.path for ch in added}
    for ch in result.changes:
        top = ch.path.partition(b"/")[0]
        if top in skip and ch.path != top:
            skip.discard(top)  # not empty: something was put there
    if skip:
        result.changes = [ch for ch in result.changes if ch.path not in skip]
    return result


def status(store: Store, ref: str) -> list[Change]:
    return pending(store, resolve(store, ref)).changes


def _under(path: bytes, selected: list[bytes]) -> bool:
    return any(path == s or path.startswith(s + b"/") or not s for s in selected)


def normalize_paths(paths: tuple[str, ...] | list[str]) -> list[bytes]:
    out = []
    for p in paths:
        parts = split_path(os.fsencode(p))
        out.append(b"/".join(parts))
    return out


def select(changes: list[Change], paths: list[bytes]) -> list[Change]:
    """The changes at or under `paths`, plus what they need: added parent
    directories and the other members of hardlink groups they touch."""
    by_path = {c.path: c for c in changes}
    chosen = {c.path for c in changes if _under(c.path, paths)}
    grew = True
    while grew:
        grew = False
        for p in list(chosen):
            ch = by_path[p]
            need = []
            parent = p.rpartition(b"/")[0]
            while parent:
                if parent in by_path and by_path[parent].status == ADDED:
                    need.append(parent)
                parent = parent.rpartition(b"/")[0]
            for meta in (ch.new, ch.old):
                if meta is not None and meta.link is not None:
                    need.append(meta.link)
            need.extend(
                q for q, other in by_path.items()
                for meta in (other.new, other.old)
                if meta is not None and meta.link == p
            )
            for q in need:
                if q in by_path and q not in chosen:
                    chosen.add(q)
                    grew = True
    return [c for c in changes if c.path in chosen]


# -- commit -------------------------------------------------------------------------


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


def _commit(store: object, ref: str, message: str, author: str | None,
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
                editor.set_file(ch.path, replace(ch.new, size=len(data)), writer.add(BLOB, data))
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


def _chosen(store: object, p: Pending, choose: Chooser) -> tuple[list[Change], list[tuple[
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


def apply_changes_to(editor: TreeEditor, writer: object, p: Pending, changes: list[Change],
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
        if meta.kind == DIR:
            editor.set_dir(ch.path, meta)
            continue
        obs = p.scan.observed.get(ch.path)
        if obs is None:  # a hardlink member whose only change is its link
            editor.set_file(ch.path, meta, ch.new_blob)
            continue
        # Read beneath the container's tree, from the inode the scan saw: what a
        # process in it swapped in since (a symlink to a host file, a FIFO, a
        # device) is never read, only reported as changed.
        tree, rel = p.view.tree_of(obs.real)
        try:
            if meta.kind == FILE:
                size += meta.size

                def done(sha: bytes, path: bytes = ch.path, meta=meta) -> None:  # noqa: ANN001
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
    return Conflict(f"{path_text(e.path)} changed while being {doing}; try again")


def _save_links(store: Store, new_id: str, base_id: str, base_root: object, sc: Scan,
                changes: list[Change], full: bool) -> None:
    if full and sc.groups is not None:
        links_mod.save(store, new_id, sc.groups)
        return
    involved = bool(sc.touched_groups) or any(
        (ch.new is not None and ch.new.link) or (ch.old is not None and ch.old.link)
        for ch in changes
    )
    if not involved:
        links_mod.save(store, new_id, links_mod.load(store, base_id, base_root))
    # else: computed by a walk when first needed


# -- restore / reset -----------------------------------------------------------------


def restore(store: Store, ref: str, paths: list[str]) -> list[Change]:
    """Discard the pending changes at and under `paths`; returns what was discarded."""
    c = resolve(store, ref)
    _refuse_if_external(c, "restore files of")
    wanted = normalize_paths(paths)
    if not wanted:
        raise BadInput("restore needs at least one path")
    if any(not w for w in wanted):
        raise BadInput("restore of / would discard everything: use `layerctl reset`")
    with locked(store, c):
        p = pending(store, c)
        discard = [ch for ch in p.changes if _under(ch.path, wanted)]
        by_path = {ch.path: ch for ch in p.changes}
        for w in wanted:
            parent = w.rpartition(b"/")[0]
            while parent:
                ch = by_path.get(parent)
                if ch is not None and (ch.status == DELETED or ch.new.kind != DIR):
                    raise Conflict(f"cannot restore /{w.decode('utf-8', 'replace')}: its "
                                   f"parent /{parent.decode('utf-8', 'replace')} is gone too; "
                                   "restore the parent")
                parent = parent.rpartition(b"/")[0]
        if not discard:
            return []
        from layerctl.store.journal import operation

        from .snapshots import snapshot

        bt = BaseTree(store, read_layer(store, p.base_id).root)
        plan: list[Change] = []
        replaced: list[bytes] = []
        for ch in discard:  # walk order: parents first
            if any(ch.path.startswith(r + b"/") for r in replaced):
                continue
            parent = ch.path.rpartition(b"/")[0]
            if ch.status != ADDED and not p.view.is_dir(parent):
                raise Conflict(f"cannot restore /{ch.path.decode('utf-8', 'replace')}: its "
                               f"parent /{parent.decode('utf-8', 'replace')} is gone too; "
                               "restore the parent")
            plan.append(ch)
            if not _meta_only_dir(ch):
                replaced.append(ch.path)
        with operation(f"restore {c.name}"):
            snapshot(store, c, p, f"before restore in {c.name}")
        with writing_back(store, c, "restore", "restored") as tree:
            for ch in plan:
                if not _meta_only_dir(ch):
                    _restore_one(store, bt, tree, ch)
            for ch in reversed(plan):  # directories' own metadata last, children first
                if _meta_only_dir(ch):
                    _apply_meta_at(tree.dir_fd(ch.path), None, ch.old)
            rmap = rootless.load(state_dir(store, c.id)) if c.driver == "vfs" else None
            _settle_parents(tree, bt, plan, discard, p.changes, rmap)
    return discard


@contextlib.contextmanager
def writing_back(store: Store, c: Container, act: str, acted: str) -> Iterator[Tree]:
    """The container's tree, writable, for putting entries back (restore, undo). Every
    step goes through directory fds: a symlink a process in it made (or swaps in
    meanwhile) is never followed, so no host file is removed, written, chmod-ed or
    hardlinked. An entry that changed or vanished meanwhile is one line naming `act`."""
    with _writable_root(store, c) as top:
        tree = Tree(os.fsencode(top))
        try:
            yield tree
        except Changed as e:
            raise Conflict(f"{path_text(e.path)} changed while being {acted}; "
                           "try again") from None
        except OSError as e:
            if e.errno not in GONE:
                raise
            raise Conflict(f"cannot {act}: {e.strerror} under the container's "
                           "filesystem (a directory there changed); try again") from None
        finally:
            tree.close()


def _settle_parents(tree: Tree, bt: BaseTree, plan: list[Change], discard: list[Change],
                    changes: list[Change], rmap: rootless.RootlessMap | None = None) -> None:
    """A parent whose only difference left is the mtime our restore caused gets the
    base's mtime back, when no other pending change is directly inside it."""
    from .changes import keep_xattr

    gone = {ch.path for ch in discard}
    busy = {ch.path.rpartition(b"/")[0] for ch in changes if ch.path not in gone}
    parents = {ch.path.rpartition(b"/")[0] for ch in plan} - busy - gone
    for parent in sorted(parents, key=walk_key, reverse=True):
        entry = bt.entry(parent)
        st = tree.lstat(parent)
        if entry is None or entry[0].kind != DIR or st is None or not stat.S_ISDIR(st.st_mode):
            continue
        now = meta_from_stat(st, tree.xattrs(parent, keep_xattr))
        if rmap is not None:
            now = rmap.faithful(parent, now, entry[0])
        if replace(now, mtime_ns=entry[0].mtime_ns) == entry[0]:
            os.utime(fd_path(tree.dir_fd(parent)), ns=(entry[0].mtime_ns, entry[0].mtime_ns))


def _meta_only_dir(ch: Change) -> bool:
    return (ch.status == CHANGED and ch.old.kind == DIR and ch.new.kind == DIR
            and not ch.opaque)


@contextlib.contextmanager
def _writable_root(store: Store, c: Container):  # noqa: ANN202
    if c.driver == "vfs":
        yield _dirs(store, c)["rootfs"]
        return
    lower = layerdirs.for_mount(store, layerdirs.stack(store, c.lower or base(store, c)))
    with overlay.temporary_mount(lower, state_dir(store, c.id)) as merged:
        yield merged


def _parent_fd(tree: Tree, path: bytes) -> tuple[int, bytes]:
    """(fd of the real directory holding `path`, its name), refusing symlinks on the way."""
    try:
        return tree.parent(path)
    except OSError as e:
        if e.errno not in GONE:
            raise
        parent = path.rpartition(b"/")[0]
        raise Conflict(f"cannot restore {path_text(path)}: {path_text(parent)} is not a "
                       "directory") from None


def _restore_one(store: Store, bt: BaseTree, tree: Tree, ch: Change) -> None:
    kept, name = _parent_fd(tree, ch.path)
    pfd = os.dup(kept)  # ours: the tree may close the fds it keeps while we recreate below
    try:
        faults.point("restore.before-write")
        parent_st = os.fstat(pfd)
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                tree.forget(ch.path)
                shutil.rmtree(name, dir_fd=pfd)  # fd-based: never follows a symlink inside
            else:
                os.unlink(name, dir_fd=pfd)
        if ch.status != ADDED:
            meta, blob = bt.entry(ch.path)
            if meta.kind == DIR:
                _recreate_dir(store, bt, tree, pfd, name, ch.path, bt.dir(ch.path))
            else:
                _recreate(store, tree, pfd, name, meta, blob)
        # Put the parent's times back: discarding a change should not create another one.
        os.utime(fd_path(pfd), ns=(parent_st.st_atime_ns, parent_st.st_mtime_ns))
    finally:
        os.close(pfd)


def _recreate(store: Store, tree: Tree, pfd: int, name: bytes, meta: Meta, blob: bytes) -> None:
    if meta.link is not None:
        first = tree.lstat(meta.link)
        if first is not None and not stat.S_ISDIR(first.st_mode):
            # linkat without AT_SYMLINK_FOLLOW: links the entry itself, never a symlink's target
            src_fd, src_name = tree.parent(meta.link)
            os.link(src_name, name, src_dir_fd=src_fd, dst_dir_fd=pfd, follow_symlinks=False)
            return
    create_entry(store, b"/proc/self/fd/%d/%s" % (pfd, name), meta.without_link(), blob,
                 os.geteuid() == 0)
    _apply_meta_at(pfd, name, meta)


def _apply_meta_at(dir_fd: int, name: bytes | None, meta: Meta) -> None:
    """apply_meta on `name` in directory `dir_fd` (None: on that directory) through an
    fd of the entry checked to be of meta's kind, so a symlink swapped in meanwhile
    cannot redirect a chmod or chown to a host file."""
    as_root = os.geteuid() == 0
    if name is None:
        apply_meta(fd_path(dir_fd), meta, as_root, follow=True)
        return
    if meta.kind == SYMLINK:  # lchown, lsetxattr, lutimes: none follows the link
        apply_meta(b"/proc/self/fd/%d/%s" % (dir_fd, name), meta, as_root)
        return
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):  # not what was just created there
            raise Changed(name)
        apply_meta(fd_path(fd), meta, as_root, follow=True)
    finally:
        os.close(fd)


def _recreate_dir(store: Store, bt: BaseTree, tree: Tree, pfd: int, name: bytes, path: bytes,
                  d: Dir) -> None:
    os.mkdir(name, 0o700, dir_fd=pfd)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        for child in d.names():
            sub = path + b"/" + child
            if child in d.dirs:
                _recreate_dir(store, bt, tree, fd, child, sub, read_dir(store, d.dirs[child]))
            else:
                meta, blob = d.files[child]
                _recreate(store, tree, fd, child, meta, blob)
        _apply_meta_at(fd, None, d.own)
    finally:
        os.close(fd)


def reset(store: Store, ref: str, layer: str | None = None) -> tuple[Container, str]:
    """Move the container to `layer` (default: its base) and discard every pending
    change, saved first as a snapshot `layerctl undo` brings back."""
    from layerctl.images import resolve as resolve_layer
    from layerctl.store.journal import operation

    from .snapshots import snapshot

    c = resolve(store, ref)
    _refuse_if_external(c, "reset")
    with operation(f"reset {c.name}"), locked(store, c):
        # Its processes would keep writing into a tree that is being replaced (vfs:
        # removed under them, the writes lost) or an upper dir cleared under them.
        _refuse_if_running(store, c, "reset")
        old = base(store, c)
        target = resolve_layer(store, layer) if layer else old
        read_layer(store, target)  # must be a layer
        snapshot(store, c, pending(store, c), f"before reset of {c.name}")
        reset_locked(store, c, old, target)
    return c, target


def reset_locked(store: object, c: Container, old: str, target: str) -> None:
    """Put the container on `target` with no pending changes (its lock held)."""
    state = state_dir(store, c.id)
    if c.driver == "overlay":
        d = _dirs(store, c)
        lower = layerdirs.stack(store, target)
        links_mod.load(store, target, read_layer(store, target).root)
        was_mounted = overlay.is_mounted(d["merged"])
        if was_mounted:
            try:
                overlay.unmount(d["merged"])
            except Conflict:
                raise Conflict(f"cannot reset container {c.name}: it is mounted and in use "
                               "(stop its processes, then try again)") from None
        overlay.clear_upper(state)
        overlay.match_root(store, target, d["upper"])
        if old != target:
            store.set_ref(c.ref, old, target, f"reset container {c.name}")
        c.lower = target
        save(store, c)
        if was_mounted:
            overlay.mount_overlay(layerdirs.for_mount(store, lower), d["upper"], d["work"],
                                  d["merged"])
    else:
        rootfs = _dirs(store, c)["rootfs"]
        vfs.remove_tree(rootfs)
        for name in ("statcache", "hashes"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(state, name))
        vfs.prepare(store, state, target)
        if old != target:
            store.set_ref(c.ref, old, target, f"reset container {c.name}")


# -- inspect ------------------------------------------------------------------------


def inspect_container(store: Store, name: str) -> dict | None:
    """Docker-style JSON for a container, or None if `name` is not a container."""
    from .state import find

    c = find(store, name)
    if c is None:
        return None
    base_id = store.ref(c.ref)
    layer = read_layer(store, base_id) if base_id else None
    mounted = is_mounted(store, c)
    d = _dirs(store, c)
    if c.driver == "overlay":
        data = {"LowerDir": layerdirs.describe(store, c.lower) if c.lower else "",
                "UpperDir": d["upper"], "MergedDir": d["merged"], "WorkDir": d["work"]}
    else:
        data = {"Dir": d["rootfs"], "MergedDir": d["rootfs"]}
    return {
        "Id": c.id,
        "Name": c.name,
        "Created": rfc3339_nano(round(c.created * 1_000_000) * 1000),
        "Image": c.image,
        "BaseLayer": base_id,
        "State": {"Status": "mounted" if mounted else "created", "Mounted": mounted},
        "Driver": c.driver,
        "DriverNote": c.driver_note,
        "GraphDriver": {"Name": c.driver, "Data": data},
        "Config": (layer.config.get("config") if layer else {}) or {},
    }


def created_iso(c: Container) -> str:
    return datetime.fromtimestamp(c.created, UTC).isoformat()


__all__ = [
    "create", "mount", "umount", "remove", "pending", "status", "commit", "restore", "reset",
    "inspect_container", "NothingToCommit", "Container", "load", "replace", "NotFound",
]
