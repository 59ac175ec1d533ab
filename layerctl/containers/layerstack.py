"""A container's chain of layer dirs (layerdirs.py), top first, for mounting: each
layer's diff dir, built when first needed (`ensure`), down to the base or to a full
checkout; a chain deeper than MAX_LOWERS stands on the flattened checkout of an older
layer at a STEP boundary (see layerdirs.py and docs/design-notes.md "Layer dirs")."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from layerctl.store.layers import read_layer

from .layerdirs import diff_path, exists, layer_path, make_link, real_id, short_path, trusted

if TYPE_CHECKING:
    from layerctl.store.repo import Store


# The kernel stacks at most 500 lower layers (OVL_MAX_STACK); Docker's overlay2
# refuses chains deeper than 128. Deeper chains stand on a flattened checkout.
MAX_LOWERS = 128
STEP = 64


def ensure(store: Store, layer_id: str) -> str:
    """`layer_id`'s diff dir, built now from its changeset if missing (or again, if a
    crash may have cut it: layerdirs.trusted)."""
    if not exists(store, layer_id) or not trusted(store, layer_id):
        from .layerbuild import build  # threads and shutil: only when a dir is missing

        build(store, layer_id)
    link = short_path(store, layer_id)
    if not os.path.islink(link):
        make_link(layer_id, link)
    return diff_path(store, layer_id)


def for_mount(store: Store, dirs: list[str]) -> list[str]:
    """`dirs` with each diff dir named by its short link (l/<short>), as overlay2
    does, so a chain's mount options stay short (and fit mount(2)'s page on
    kernels without `lowerdir+`)."""
    out = []
    for d in dirs:
        layer_id = real_id(store, d)
        out.append(short_path(store, layer_id)
                   if layer_id and d == diff_path(store, layer_id) else d)
    return out


def stack(store: Store, layer_id: str, make: bool = True) -> list[str]:
    """The lower dirs of a container on `layer_id`, top first: the layers' diff dirs
    down to the base, or to a full checkout that already exists (an older store's
    cache dir is read as is), or, past MAX_LOWERS, to a flattened checkout. With
    `make`, missing diff dirs are built (from their own changesets); without, a
    missing one is named by its path all the same (see `missing`)."""
    from .overlayfs import checkout_dir, lower_dir

    ids: list[str] = []
    current: str | None = layer_id
    while current is not None:
        if os.path.isdir(checkout_dir(store, current)):
            return [_dir(store, i, make) for i in ids] + [checkout_dir(store, current)]
        ids.append(current)
        current = read_layer(store, current).parent
    if len(ids) > MAX_LOWERS:
        # positions from the base: 0 .. n-1; flatten at the first STEP boundary that
        # leaves at most MAX_LOWERS - 1 diff dirs above it
        n = len(ids)
        flat = n - MAX_LOWERS
        flat += (STEP - 1 - flat % STEP) % STEP
        keep = ids[: n - 1 - flat]  # top first, the layers above the flattened one
        bottom = lower_dir(store, ids[n - 1 - flat]) if make else checkout_dir(
            store, ids[n - 1 - flat])
        return [_dir(store, i, make) for i in keep] + [bottom]
    return [_dir(store, i, make) for i in ids]


def _dir(store: Store, layer_id: str, make: bool) -> str:
    return ensure(store, layer_id) if make else diff_path(store, layer_id)


NOT_MADE = "<not made yet: made when a container first needs it>"


def describe(store: Store, layer_id: str) -> str:
    """The lower dirs of a container on `layer_id`, `:`-joined as Docker prints
    LowerDir, or NOT_MADE while one of them does not exist yet."""
    dirs = stack(store, layer_id, make=False)
    return ":".join(dirs) if all(os.path.isdir(d) for d in dirs) else NOT_MADE


def graph_driver(store: Store, layer_id: str) -> dict[str, Any]:
    """`inspect IMAGE`'s GraphDriver: the top layer's dir over the rest of its chain."""
    dirs = stack(store, layer_id, make=False)
    made = [os.path.isdir(d) for d in dirs]
    top = dirs[0]
    data = {"LowerDir": ":".join(dirs[1:]) if all(made[1:]) else NOT_MADE,
            "UpperDir": top if made[0] else NOT_MADE}
    if top == diff_path(store, layer_id):
        here = layer_path(store, layer_id)
        data["WorkDir"] = os.path.join(here, "work") if made[0] else NOT_MADE
        data["MergedDir"] = os.path.join(here, "merged") if made[0] else NOT_MADE
    else:  # an older store's full checkout: no work or merged dir of its own
        data["WorkDir"] = data["MergedDir"] = "<none: a full checkout of the layer>"
    if len(dirs) == 1:
        del data["LowerDir"]  # Docker omits it for a one-layer image
    return {"Name": "overlay", "Data": data}
