"""The overlay driver: kernel overlayfs over the base layer's chain of layer dirs.

    containers/ID/upper    the container's own files: changes, whiteouts, opaque dirs
    containers/ID/work     overlayfs's work dir
    containers/ID/merged   where it is mounted

The lower dirs are layerstack.stack's (top first) of `Container.lower`: the layer
whose chain was last mounted. A commit moves the base but not `lower`, since the
upper dir still holds every change since `lower` and the base's dirs show the same
tree; `mount` catches `lower` up. The mounting itself is overlayfs.py's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from layerctl.beneath import walk
from layerctl.errors import Conflict
from layerctl.store.checkout import apply_meta
from layerctl.store.diff import diff
from layerctl.store.fstree import read_dir
from layerctl.store.layers import read_layer

from .. import links, overlayfs
from ..changes import scan
from ..state import base, destroy, save, state_dir
from ..view import View, is_opaque, is_whiteout

if TYPE_CHECKING:
    from layerctl.store.fstree import DirRef
    from layerctl.store.repo import Store

    from ..changes import HashCache, Scan
    from ..rootless import RootlessMap
    from ..state import Container


class Dirs(NamedTuple):
    upper: str
    work: str
    merged: str  # "" for a tracked container: layerctl never mounts it


def unavailable(store: Store) -> str | None:
    """Why overlay mounts do not work here (None: they do); a success is
    remembered until the next boot (overlayfs.probe_mount)."""
    return overlayfs.probe_mount(store.path("cache", "probe"),
                                 store.path("cache", "overlay-probed"))


class OverlayDriver:
    name = "overlay"
    owned = True

    def dirs(self, store: Store, c: Container) -> Dirs:
        state = state_dir(store, c.id)
        return Dirs(*(os.path.join(state, d) for d in ("upper", "work", "merged")))

    def prepare(self, store: Store, c: Container, layer_id: str) -> None:
        from .. import layerstack  # not for status/ps: it builds layer dirs (shutil, threads)

        layerstack.stack(store, layer_id)
        d = self.dirs(store, c)
        for path in d:
            os.makedirs(path, exist_ok=True)
        match_root(store, layer_id, d.upper)
        c.lower = layer_id

    def top(self, store: Store, c: Container) -> str:
        return self.dirs(store, c).upper

    def root(self, store: Store, c: Container) -> str:
        return self.dirs(store, c).merged

    def is_mounted(self, store: Store, c: Container) -> bool:
        return overlayfs.is_mounted(self.dirs(store, c).merged)

    def mount(self, store: Store, c: Container) -> str:
        from .. import layerstack  # not for status/ps: it builds layer dirs (shutil, threads)

        d = self.dirs(store, c)
        if overlayfs.is_mounted(d.merged):
            return d.merged
        layer_id = base(store, c)
        lower = layerstack.stack(store, layer_id)
        if c.lower != layer_id:
            # The upper dir holds every change since c.lower, and every layer committed
            # since came from it: over the base's layer dirs it shows the same tree.
            c.lower = layer_id
            save(store, c)
        overlayfs.mount_overlay(layerstack.for_mount(store, lower), d.upper, d.work, d.merged)
        return d.merged

    def unmount(self, store: Store, c: Container) -> None:
        overlayfs.unmount(self.dirs(store, c).merged)

    def destroy(self, store: Store, c: Container) -> None:
        if self.is_mounted(store, c):
            self.unmount(store, c)
        destroy(store, c)

    def _lowers(self, store: Store, c: Container) -> list[str]:
        from .. import layerstack  # not for status/ps: it builds layer dirs (shutil, threads)

        return layerstack.stack(store, c.lower or base(store, c))

    def view(self, store: Store, c: Container) -> View:
        return View(os.fsencode(self.top(store, c)),
                    [os.fsencode(p) for p in self._lowers(store, c)])

    def scan(self, store: Store, c: Container, base_id: str, base_root: DirRef, view: View,
             hashes: HashCache) -> Scan:
        # What the upper dir holds, and what differs between the lower dirs' layer
        # and the base (the layers committed since the last mount)
        cands = {p for p, _kind in upper_entries(view.upper)}
        lower_id = c.lower or base_id
        if lower_id != base_id:
            cands.update(ch.path for ch in diff(store, read_layer(store, lower_id).root,
                                                base_root))
        return scan(store, base_root, base_id, view, cands, hashes)

    def rootless_map(self, store: Store, c: Container) -> RootlessMap | None:
        return None  # overlay needs root: every attribute is applied as recorded

    @contextlib.contextmanager
    def writable_root(self, store: Store, c: Container) -> Iterator[str]:
        from .. import layerstack  # not for status/ps: it builds layer dirs (shutil, threads)

        d = self.dirs(store, c)
        if overlayfs.is_mounted(d.merged):
            yield d.merged
            return
        lower = layerstack.for_mount(store, self._lowers(store, c))
        overlayfs.mount_overlay(lower, d.upper, d.work, d.merged)
        try:
            yield d.merged
        finally:
            overlayfs.unmount(d.merged)

    def reset(self, store: Store, c: Container, old: str, target: str) -> None:
        import shutil  # removing only (shutil pulls bz2, lzma)

        from .. import layerstack  # not for status/ps: it builds layer dirs (shutil, threads)

        d = self.dirs(store, c)
        lower = layerstack.stack(store, target)
        links.load(store, target, read_layer(store, target).root)
        was_mounted = overlayfs.is_mounted(d.merged)
        if was_mounted:
            try:
                overlayfs.unmount(d.merged)
            except Conflict:
                raise Conflict(f"cannot reset container {c.name}: it is mounted and in use "
                               "(stop its processes, then try again)") from None
        for path in (d.upper, d.work):  # every pending change goes
            if os.path.lexists(path):
                shutil.rmtree(path)
            os.mkdir(path)
        match_root(store, target, d.upper)
        if old != target:
            store.set_ref(c.ref, old, target, f"reset container {c.name}")
        c.lower = target
        save(store, c)
        if was_mounted:
            overlayfs.mount_overlay(layerstack.for_mount(store, lower), d.upper, d.work,
                                    d.merged)

    def graph_data(self, store: Store, c: Container) -> dict[str, str]:
        from .. import layerstack  # not for status/ps: it builds layer dirs (shutil, threads)

        d = self.dirs(store, c)
        return {"LowerDir": layerstack.describe(store, c.lower) if c.lower else "",
                "UpperDir": d.upper, "MergedDir": d.merged, "WorkDir": d.work}

    def refuse_changes(self, c: Container, action: str) -> None:
        pass


def match_root(store: Store, layer_id: str, upper: str) -> None:
    """The merged root takes the upper dir's attributes: make them the layer root's."""
    own = read_dir(store, read_layer(store, layer_id).root).own
    apply_meta(os.fsencode(upper), own, os.geteuid() == 0)


def upper_entries(upper: bytes) -> Iterator[tuple[bytes, str]]:
    """(container path, kind) for every entry of the upper dir, parents first.

    kind: "whiteout", "opaque" (a directory hiding its lower entries), "dir", "other".
    Walked by directory fds (beneath.walk): entries a busy container removes
    meanwhile are skipped, and a directory swapped for a symlink is not followed.
    """
    for rel, st, fd in walk(upper):
        if fd is not None:
            yield rel, ("opaque" if is_opaque(fd) else "dir")
        elif is_whiteout(st):
            yield rel, "whiteout"
        else:
            yield rel, "other"
