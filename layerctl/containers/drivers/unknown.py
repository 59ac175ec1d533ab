"""A record whose driver this layerctl does not know (edited by hand, or written by a
newer layerctl): the container is broken (state.broken says why, `ps -a` shows it) and
every operation refuses with one line, except `rm`, which removes the record and its
directory once nothing is mounted below it."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NoReturn

from layerctl.errors import Conflict, LayerctlError

from ..state import destroy, state_dir
from .vfs import remove_tree

if TYPE_CHECKING:
    from layerctl.store.fstree import DirRef
    from layerctl.store.repo import Store

    from ..changes import HashCache, Scan
    from ..rootless import RootlessMap
    from ..state import Container
    from ..view import View


def mounts_below(path: str) -> list[str]:
    """The mount points at or below `path` (from /proc/self/mountinfo)."""
    top = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(b" ")
        if len(fields) < 5:
            continue
        point = os.fsdecode(fields[4].replace(b"\\040", b" ").replace(b"\\134", b"\\"))
        if point == top or point.startswith(top + "/"):
            found.append(point)
    return found


class UnknownDriver:
    # not to be touched but by the user's `rm`: `system df` counts nothing for it and
    # `container prune` leaves it
    owned = False

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known

    def _refuse(self, c: Container) -> NoReturn:
        raise LayerctlError(f"container {c.name} has unknown driver {self.name!r} (this "
                            f"layerctl knows {', '.join(self.known)}); `layerctl rm` removes it")

    def prepare(self, store: Store, c: Container, layer_id: str) -> None:
        self._refuse(c)

    def top(self, store: Store, c: Container) -> str:
        self._refuse(c)

    def root(self, store: Store, c: Container) -> str:
        self._refuse(c)

    def is_mounted(self, store: Store, c: Container) -> bool:
        return bool(mounts_below(state_dir(store, c.id)))

    def mount(self, store: Store, c: Container) -> str:
        self._refuse(c)

    def unmount(self, store: Store, c: Container) -> None:
        self._refuse(c)

    def destroy(self, store: Store, c: Container) -> None:
        busy = mounts_below(state_dir(store, c.id))
        if busy:
            raise Conflict(f"container {c.name} has unknown driver {self.name!r} and "
                           f"{busy[0]} is mounted; unmount it first")
        destroy(store, c)
        remove_tree(state_dir(store, c.id))

    def view(self, store: Store, c: Container) -> View:
        self._refuse(c)

    def scan(self, store: Store, c: Container, base_id: str, base_root: DirRef, view: View,
             hashes: HashCache) -> Scan:
        self._refuse(c)

    def rootless_map(self, store: Store, c: Container) -> RootlessMap | None:
        self._refuse(c)

    def writable_root(self, store: Store, c: Container) -> AbstractContextManager[str]:
        self._refuse(c)

    def reset(self, store: Store, c: Container, old: str, target: str) -> None:
        self._refuse(c)

    def graph_data(self, store: Store, c: Container) -> dict[str, str]:
        return {}

    def refuse_changes(self, c: Container, action: str) -> None:
        self._refuse(c)
