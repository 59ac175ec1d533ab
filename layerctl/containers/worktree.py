"""A container's pending changes: what differs between its files and its base layer
(`git status` for a container), and the selection of some of them by path.

The scan itself is changes.py's; which paths are candidates, the driver's
(drivers/): an overlay upper dir names them, a vfs rootfs is walked against a
stat cache.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from layerctl.record import Record
from layerctl.store.diff import ADDED, Change
from layerctl.store.edit import split_path
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR

from .changes import HashCache, Scan, scan
from .drivers import driver_for
from .state import Container, base, resolve, state_dir
from .view import View

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def view_of(store: Store, c: Container) -> View:
    """The container's tree as the change scan reads it."""
    return driver_for(c).view(store, c)


class Pending(Record):
    __slots__ = ("container", "base_id", "scan", "view")

    def __init__(self, container: Container, base_id: str, scan: Scan, view: View):
        self.container = container
        self.base_id = base_id
        self.scan = scan
        self.view = view

    @property
    def changes(self) -> list[Change]:
        return self.scan.changes


def pending(store: Store, c: Container, paths: tuple[bytes, ...] | None = None) -> Pending:
    """The container's changes against its base layer, all or for `paths` (re-evaluated
    only there: what a watcher calls when events name those paths)."""
    driver = driver_for(c)
    base_id = base(store, c)
    layer = read_layer(store, base_id)
    view = driver.view(store, c)
    hashes = HashCache(os.path.join(state_dir(store, c.id), "hashes"))
    if paths is not None:
        result = scan(store, layer.root, base_id, view, paths, hashes,
                      driver.rootless_map(store, c))
    else:
        result = driver.scan(store, c, base_id, layer.root, view, hashes)
    return Pending(c, base_id, _without_mount_points(result), view)


# The mount points every run needs (runtime.py mounts proc, a tmpfs and sysfs there);
# the runtime makes them when the image lacks them. Docker keeps them in an "init"
# layer that diff and commit skip; here they are skipped while they are empty
# directories the base does not have (see docs/design-notes.md).
RUNTIME_MOUNT_POINTS = frozenset({b"dev", b"proc", b"sys"})


def _without_mount_points(result: Scan) -> Scan:
    added = [ch for ch in result.changes if ch.path in RUNTIME_MOUNT_POINTS
             and ch.status == ADDED and ch.new is not None and ch.new.kind == DIR]
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


def under(path: bytes, selected: list[bytes]) -> bool:
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
    chosen = {c.path for c in changes if under(c.path, paths)}
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
