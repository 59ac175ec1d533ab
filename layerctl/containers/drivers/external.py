"""A podman or docker container tracked by layerctl (`layerctl track`, oci/engines.py).

Its record is an overlay container's (`driver` "overlay", `lower` the image's top
layer, whose layer dirs hold the same tree as the engine's lower layers) whose
`extra["external"]` names the engine's container and its dirs instead of the
container's own. layerctl only reads the engine's upper dir: status, diff,
commit and export work; mount, restore, reset and stash are refused (the engine
owns the files) and `rm` forgets the tracking, nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

from layerctl.errors import Conflict
from layerctl.store.layers import read_layer

from .. import links
from ..state import destroy, finish_create, new_container
from .overlay import Dirs, OverlayDriver

if TYPE_CHECKING:
    from layerctl.store.repo import Store

    from ..state import Container

KEY = "external"


def tracks(c: Container) -> bool:
    return bool(c.extra.get(KEY))


def create(store: Store, image: str, layer_id: str, name: str | None, note: str,
           engine: str, cid: str, engine_name: str, dirs: dict[str, str]) -> Container:
    """A new container tracking `engine`'s container `engine_name` (id `cid`), on
    `layer_id`; `dirs`: its GraphDriver.Data (UpperDir, WorkDir, LowerDir)."""
    from .. import layerstack  # not for status/ps: it builds layer dirs (shutil, threads)

    c = new_container(store, image, layer_id, OverlayDriver.name, name, note)
    try:
        layerstack.stack(store, layer_id)
        links.load(store, layer_id, read_layer(store, layer_id).root)
        c.lower = layer_id
        c.extra[KEY] = {"engine": engine, "id": cid, "name": engine_name,
                        "upper": dirs.get("UpperDir", ""), "work": dirs.get("WorkDir", ""),
                        "lower": dirs.get("LowerDir", "")}
        finish_create(store, c)
    except BaseException:
        destroy(store, c)
        raise
    return c


class ExternalDriver(OverlayDriver):
    """The overlay driver's reading over the engine's upper dir; every change refused."""

    owned = False

    def dirs(self, store: Store, c: Container) -> Dirs:
        record = c.extra[KEY]
        return Dirs(record["upper"], record.get("work", ""), "")

    def refuse_changes(self, c: Container, action: str) -> NoReturn:
        record = c.extra[KEY]
        engine = record.get("engine", "its engine")
        raise Conflict(f"container {c.name} tracks {engine} container {record.get('name')}: "
                       f"{action} it with {engine}")

    def root(self, store: Store, c: Container) -> str:
        self.refuse_changes(c, "mount")

    def is_mounted(self, store: Store, c: Container) -> bool:
        return False

    def mount(self, store: Store, c: Container) -> str:
        self.refuse_changes(c, "mount")

    def unmount(self, store: Store, c: Container) -> None:
        self.refuse_changes(c, "unmount")

    def destroy(self, store: Store, c: Container) -> None:
        destroy(store, c)  # the state only: the dirs are the engine's

    @contextlib.contextmanager
    def writable_root(self, store: Store, c: Container) -> Iterator[str]:
        self.refuse_changes(c, "change files of")
        yield ""  # never reached

    def reset(self, store: Store, c: Container, old: str, target: str) -> None:
        self.refuse_changes(c, "reset")
