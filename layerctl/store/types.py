"""What a function needs of a store, as protocols: one name per capability, so a
signature says which, and a type checker holds callers to it.

- `TreeReader`: trees and blobs. Walking, diffing and checking out a tree need no
  more; tarapply's `_KeptBlobs` (blobs held back in memory) is one.
- `ObjectReader`: also raw objects of any type (commits): reading a layer.
- `StoreLike`: also writing packs and the state directories: `Store` itself, and
  store/staging.py's `Staging`, which stages packs before they land in the store.

Everything else (refs, containers, the dulwich object store) takes the concrete
`layerctl.store.repo.Store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from layerctl.store.objects import PackWriter

TreeEntry = tuple[bytes, bytes, bytes]  # (name, mode, binary id), git's order


class TreeReader(Protocol):
    def read_tree(self, binsha: bytes, /) -> list[TreeEntry]: ...

    def read_blob(self, binsha: bytes, /) -> bytes: ...


class ObjectReader(TreeReader, Protocol):
    def read_raw(self, sha: bytes, /) -> tuple[int, bytes]: ...


class StoreLike(ObjectReader, Protocol):
    def has(self, binsha: bytes, /) -> bool: ...

    def pack_writer(self, level: int = 1) -> PackWriter: ...

    def path(self, *parts: str) -> str: ...
