"""A container's life: create, mount, umount, rm, inspect.

Each asks the container's driver (drivers/) for what differs between overlay, vfs
and a tracked engine container; what a container holds and how it changes is
worktree.py (pending changes), committing.py and discard.py (restore, reset).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from layerctl import faults
from layerctl.errors import Conflict
from layerctl.store.layers import read_layer
from layerctl.words import rfc3339_nano

from . import links
from .drivers import choose, driver_for
from .state import Container, destroy, finish_create, locked, new_container, resolve

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def create(
    store: Store, image: str, name: str | None = None, driver: str | None = None
) -> tuple[Container, str]:
    """Create a container on `image` (any layer reference); returns it and a notice
    (non-empty when overlay was wanted but cannot work here, saying why)."""
    from layerctl.images import resolve as resolve_layer

    layer_id = resolve_layer(store, image)
    chosen, notice = choose(store, driver)
    c = new_container(store, image, layer_id, chosen, name, notice)
    try:
        links.load(store, layer_id, read_layer(store, layer_id).root)
        faults.point("create.prepare-driver")
        driver_for(c).prepare(store, c, layer_id)
        finish_create(store, c)
    except BaseException:
        with contextlib.suppress(Exception):
            destroy(store, c)
        raise
    return c, notice


def is_mounted(store: Store, c: Container) -> bool:
    return driver_for(c).is_mounted(store, c)


def root_dir(store: Store, c: Container) -> str:
    """Where the container's filesystem is seen (merged dir or vfs rootfs)."""
    return driver_for(c).root(store, c)


def mount(store: Store, ref: str) -> str:
    c = resolve(store, ref)
    driver = driver_for(c)
    driver.refuse_changes(c, "mount")
    with locked(store, c):
        return driver.mount(store, c)


def refuse_if_running(store: Store, c: Container, action: str) -> None:
    """Conflict while the container's process runs (it would write meanwhile)."""
    from layerctl.runtime.process import status

    if status(store, c.id)[0] == "running":
        raise Conflict(f"container {c.name} is running; stop it before you {action} it")


def umount(store: Store, ref: str) -> Container:
    c = resolve(store, ref)
    driver = driver_for(c)
    driver.refuse_changes(c, "unmount")
    refuse_if_running(store, c, "unmount")
    with locked(store, c):
        driver.unmount(store, c)
    return c


def remove(store: Store, ref: str, force: bool = False) -> Container:
    from layerctl.runtime.control import forget
    from layerctl.runtime.process import status

    c = resolve(store, ref, broken_ok=True)
    driver = driver_for(c)
    if status(store, c.id)[0] == "running" and not force:
        raise Conflict(f"container {c.name} is running; stop it first or use rm -f")
    forget(store, c.id, force=force)
    with locked(store, c):
        if driver.is_mounted(store, c) and not force:
            raise Conflict(f"container {c.name} is mounted; umount it first or use rm -f")
        driver.destroy(store, c)
    return c


def inspect_container(store: Store, name: str) -> dict[str, Any] | None:
    """Docker-style JSON for a container, or None if `name` is not a container."""
    from .state import find

    c = find(store, name)
    if c is None:
        return None
    driver = driver_for(c)
    base_id = store.ref(c.ref)
    layer = read_layer(store, base_id) if base_id else None
    mounted = driver.is_mounted(store, c)
    return {
        "Id": c.id,
        "Name": c.name,
        "Created": rfc3339_nano(round(c.created * 1_000_000) * 1000),
        "Image": c.image,
        "BaseLayer": base_id,
        "State": {"Status": "mounted" if mounted else "created", "Mounted": mounted},
        "Driver": c.driver,
        "DriverNote": c.driver_note,
        "GraphDriver": {"Name": c.driver, "Data": driver.graph_data(store, c)},
        "Config": (layer.config.get("config") if layer else {}) or {},
    }
