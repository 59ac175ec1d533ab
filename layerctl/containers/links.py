"""Hardlink groups of a layer: first member -> all members, in walk order.

A layer's records only say `link=<first>` on the later members, so finding
the group of a first member needs the whole tree. The index is computed once
per layer (a full walk, the same cost as the layer's lower-dir checkout) and
cached under Store.path("cache", "links"); a commit writes the new layer's
index directly from its parent's.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from layerctl.store.fstree import DirRef, walk

if TYPE_CHECKING:
    from layerctl.store.repo import Store
    from layerctl.store.types import TreeReader


def _path(store: Store, layer_id: str) -> str:
    return store.path("cache", "links", layer_id + ".json")


def compute(store: TreeReader, root: DirRef) -> dict[bytes, list[bytes]]:
    groups: dict[bytes, list[bytes]] = {}
    for path, meta, _obj in walk(store, root):
        if meta.link is not None:
            groups.setdefault(meta.link, [meta.link]).append(path)
    return groups


def load(store: Store, layer_id: str, root: DirRef) -> dict[bytes, list[bytes]]:
    path = _path(store, layer_id)
    try:
        with open(path) as f:
            data = json.load(f)
        return {
            os.fsencode(k): [os.fsencode(m) for m in v] for k, v in data.items()
        }
    except (FileNotFoundError, ValueError):
        pass
    groups = compute(store, root)
    save(store, layer_id, groups)
    return groups


def save(store: Store, layer_id: str, groups: dict[bytes, list[bytes]]) -> None:
    path = _path(store, layer_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    data = {os.fsdecode(k): [os.fsdecode(m) for m in v] for k, v in groups.items()}
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def member_of(groups: dict[bytes, list[bytes]]) -> dict[bytes, bytes]:
    """path -> first member, for every member of every group."""
    return {m: first for first, members in groups.items() for m in members}
