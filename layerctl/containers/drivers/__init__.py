"""Container drivers: how a container's files are kept, one module per way.

    overlay.py    kernel overlayfs: upper/ and work/ over the base's layer dirs
    vfs.py        a full checkout in rootfs/, changes found through a stat cache
    external.py   a podman/docker container tracked read-only (its engine's upper dir)
    unknown.py    a record naming a driver this layerctl does not know: only `rm` works

A container record names its driver (`Container.driver`; a tracked container is
an overlay one whose record also names the engine's dirs), and `driver_for`
gives the object that knows it. Every operation in containers/ asks that object,
so a new driver is a module here and one line in DRIVERS (as ostree's
bootloaders and umoci's fseval are). Nothing outside this package tests the
driver's name.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from layerctl.errors import BadInput, LayerctlError

from ..state import DRIVER_NAMES
from . import external, overlay, unknown, vfs

if TYPE_CHECKING:
    from layerctl.store.fstree import DirRef
    from layerctl.store.repo import Store

    from ..changes import HashCache, Scan
    from ..rootless import RootlessMap
    from ..state import Container
    from ..view import View


class Driver(Protocol):
    """What containers/ needs of a driver. Methods marked "lock held" are called
    with the container's lock (state.locked) held by the caller."""

    name: str
    # layerctl owns the files (False: another engine's, read only: no mount,
    # restore, reset; `rm` forgets the container and nothing else)
    owned: bool

    def prepare(self, store: Store, c: Container, layer_id: str) -> None:
        """Make the directories of a new container on `layer_id`."""

    def top(self, store: Store, c: Container) -> str:
        """The directory holding the container's own files (upper dir or rootfs):
        what a watcher watches and where a file can be put without a mount."""

    def root(self, store: Store, c: Container) -> str:
        """Where the container's filesystem is seen whole (merged dir or rootfs)."""

    def is_mounted(self, store: Store, c: Container) -> bool: ...

    def mount(self, store: Store, c: Container) -> str:
        """Mount (lock held); returns `root`."""

    def unmount(self, store: Store, c: Container) -> None:
        """Unmount (lock held)."""

    def destroy(self, store: Store, c: Container) -> None:
        """Unmount if mounted and remove the container's files and state (lock held)."""

    def view(self, store: Store, c: Container) -> View:
        """The container's tree as the change scan reads it."""

    def scan(self, store: Store, c: Container, base_id: str, base_root: DirRef, view: View,
             hashes: HashCache) -> Scan:
        """Every change of the container against its base layer."""

    def rootless_map(self, store: Store, c: Container) -> RootlessMap | None:
        """What a rootless checkout could not apply (vfs without root), else None."""

    def writable_root(self, store: Store, c: Container) -> AbstractContextManager[str]:
        """The whole filesystem, writable, for putting entries back (lock held)."""

    def reset(self, store: Store, c: Container, old: str, target: str) -> None:
        """Drop every pending change and put the container on layer `target`, moving
        its base ref from `old` (lock held)."""

    def graph_data(self, store: Store, c: Container) -> dict[str, str]:
        """Docker's GraphDriver.Data for `inspect`."""

    def refuse_changes(self, c: Container, action: str) -> None:
        """Raise Conflict when layerctl may not `action` the container (not owned)."""


DEFAULT = "overlay"
# The driver names a container record can hold (state.DRIVER_NAMES, which
# state.broken checks), and their drivers (which keep no state of their own: one
# of each serves every container).
DRIVERS: dict[str, Driver] = {
    "overlay": overlay.OverlayDriver(),
    "vfs": vfs.VfsDriver(),
}
assert tuple(DRIVERS) == DRIVER_NAMES
_TRACKED: Driver = external.ExternalDriver()


def driver_for(c: Container) -> Driver:
    """The driver of container `c`. A record naming a driver this layerctl does not
    know (written by hand, or by a newer version) gets one that refuses everything
    but `rm`, with one line naming the driver."""
    if external.tracks(c):
        return _TRACKED
    driver = DRIVERS.get(c.driver)
    if driver is None:
        return unknown.UnknownDriver(c.driver, list(DRIVERS))
    return driver


def choose(store: Store, wanted: str | None) -> tuple[str, str]:
    """The driver a new container gets when `wanted` (None: the default) was asked
    for, and a notice (non-empty when overlay was wanted but cannot work here,
    saying why vfs is used instead)."""
    if wanted is None or wanted == DEFAULT:
        reason = overlay.unavailable(store)
        if not reason:
            return DEFAULT, ""
        if wanted is not None:
            raise LayerctlError(f"overlay driver unavailable: {reason}")
        return "vfs", f"using the vfs driver: {reason}"
    if wanted not in DRIVERS:
        raise BadInput(f"unknown driver {wanted!r}: use {' or '.join(DRIVERS)}")
    return wanted, ""


__all__ = ["DRIVERS", "Driver", "choose", "driver_for"]
