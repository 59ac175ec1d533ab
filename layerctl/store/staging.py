"""Staged packs: objects written by one load, readable before they land in the store.

A load applies each layer onto the tree of the layer below it, so it must read
back what it wrote a moment ago, yet it must leave the store exactly as it was
if any later layer turns out to be bad. Like git's quarantine for received
packs (`objects/incoming-*`), every pack of the operation is finished into a
private directory under `objects/`, which neither git nor dulwich reads; the
`Staging` object reads them together with the store, and `land()` moves them
into `objects/pack` (pack first, index last: git ignores a pack without its
index) once everything is verified. `discard()` removes them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING

from layerctl.atomic import fsync_dir
from layerctl.errors import Corrupt
from layerctl.store import debris
from layerctl.store.debris import INCOMING_PREFIX
from layerctl.store.objects import TREE, PackWriter, parse_tree
from layerctl.store.packs import Pack

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore

    from layerctl.store.repo import Store



class Staging:
    """The store plus the packs of one unfinished operation (a store-like reader)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        objects = store.path("objects")
        _clean_stale(objects)
        self.dir = tempfile.mkdtemp(prefix=f"{INCOMING_PREFIX}{os.getpid()}-", dir=objects)
        self.packs: list[Pack] = []
        self.bases: list[str] = []  # the staged packs' paths without .pack / .idx
        self._packed = store.packed_lookup()
        self._trees: dict[bytes, list[tuple[bytes, bytes, bytes]]] = {}

    # -- writing ------------------------------------------------------------

    def has(self, binsha: bytes) -> bool:
        if self._packed(binsha):
            return True
        return any(pack.index.offset(binsha) is not None for pack in self.packs)

    def pack_writer(self, level: int = 1) -> PackWriter:
        """A writer whose pack, once finish()ed, is read here and landed by land()."""
        return PackWriter(self.dir, self.has, level=level)

    def add(self, writer: PackWriter) -> None:
        """Take the finished pack of `writer` (nothing if it was empty)."""
        if writer.pack_path is None:
            return
        base = writer.pack_path[: -len(".pack")]
        self.packs.append(Pack(base))  # store/packs.py: no dulwich import (~7 ms)
        self.bases.append(base)

    # -- reading (the subset of Store that fstree, diff, edit and tarapply use) -----

    def read_raw(self, sha: bytes) -> tuple[int, bytes]:
        binsha = sha if len(sha) == 20 else bytes.fromhex(sha.decode())
        for pack in self.packs:
            found = pack.read(binsha, self.read_raw)
            if found is not None:
                return found
        return self.store.read_raw(binsha)

    def read_blob(self, binsha: bytes) -> bytes:
        return self.read_raw(binsha)[1]

    def read_tree(self, binsha: bytes) -> list[tuple[bytes, bytes, bytes]]:
        found = self._trees.get(binsha)
        if found is None:
            type_num, data = self.read_raw(binsha)
            if type_num != TREE:
                raise Corrupt(f"object {binsha.hex()} is not a tree")
            found = self._trees[binsha] = parse_tree(data)
        return found

    def path(self, *parts: str) -> str:
        return self.store.path(*parts)

    @property
    def objects(self) -> DiskObjectStore:  # the store's dulwich object store
        return self.store.objects

    # -- ending ---------------------------------------------------------------

    def _close(self) -> None:
        for pack in self.packs:
            pack.close()
        self.packs = []
        self.bases = []
        self._trees.clear()

    def land(self) -> None:
        """Move the staged packs into the store and make them visible."""
        names = sorted(os.listdir(self.dir))
        self._close()
        pack_dir = self.store.path("objects", "pack")
        os.makedirs(pack_dir, exist_ok=True)
        for name in names:
            if name.endswith(".pack") and name[:-5] + ".idx" in names:
                os.rename(os.path.join(self.dir, name), os.path.join(pack_dir, name))
        for name in names:
            if name.endswith(".idx") and name[:-4] + ".pack" in names:
                os.rename(os.path.join(self.dir, name), os.path.join(pack_dir, name))
        fsync_dir(pack_dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.store.landed()

    def discard(self) -> None:
        self._close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if os.path.isdir(self.dir):
            self.discard()


def _clean_stale(objects: str) -> None:
    """Remove the staging dirs of processes that died before landing or discarding."""
    debris.clean_dead_dirs(objects, INCOMING_PREFIX)
