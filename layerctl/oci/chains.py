"""Finding a layer by chain: (parent layer id, DiffID) -> layer id.

A layer loaded from an archive or a registry is already in the store when a
layer with the same parent and the same DiffID is (Docker's "already exists",
keyed by ChainID). The DiffID trailer of each layer commit is the key; the
Source-DiffID trailer (the DiffID its source gave, when layerctl's own tar of
the layer differs) is a second key, so loading the same archive again finds
every layer without applying it.

The index is built on first use from the layers reachable from image tags and
containers, reading each layer commit once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.errors import LayerctlError
from layerctl.store.layers import Layer, read_layer

if TYPE_CHECKING:
    from layerctl.store.repo import Store

_ROOTS = ("refs/images/", "refs/containers/")


class LayerIndex:
    """(parent id or None, DiffID) -> layer id, over the layers the store keeps."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._keys: dict[tuple[str | None, str], str] | None = None
        self._layers: dict[str, Layer] = {}

    def _build(self) -> dict[tuple[str | None, str], str]:
        keys: dict[tuple[str | None, str], str] = {}
        tops = []
        for prefix in _ROOTS:
            tops.extend(sha for _ref, sha in sorted(self.store.refs_under(prefix).items()))
        seen: set[str] = set()
        for top in tops:
            current: str | None = top
            while current and current not in seen:
                seen.add(current)
                try:
                    layer = read_layer(self.store, current)
                except LayerctlError:
                    break  # not a layer (or damaged): fsck's business, not ours
                self._remember(keys, layer)
                current = layer.parent
        return keys

    def _remember(self, keys: dict, layer: Layer) -> None:
        self._layers[layer.id] = layer
        for diff_id in (layer.diff_id, layer.source_diff_id):
            if diff_id:
                keys.setdefault((layer.parent, diff_id), layer.id)

    def find(self, parent: str | None, diff_id: str) -> Layer | None:
        """A stored layer on `parent` whose changeset has DiffID `diff_id`, if any."""
        if self._keys is None:
            self._keys = self._build()
        found = self._keys.get((parent, diff_id))
        return self._layers[found] if found else None

    def add(self, layer: Layer) -> None:
        if self._keys is not None:
            self._remember(self._keys, layer)
