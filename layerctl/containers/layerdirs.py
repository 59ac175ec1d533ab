"""Per-layer diff dirs (Docker overlay2's layout): one directory per layer holding
only that layer's changes, shared by every image and container whose chain has it.

    cache/overlay/<layer-id>/diff     the layer's changeset: added and changed
                                      entries, whiteouts (0/0 char devices),
                                      replaced directories opaque
                                      (trusted.overlay.opaque=y)
    cache/overlay/<layer-id>/work     empty; GraphDriver's WorkDir
    cache/overlay/<layer-id>/merged   empty; GraphDriver's MergedDir
    cache/overlay/l/<short>           -> ../<layer-id>/diff (mount options name these)

A dir is built from `diff(parent, layer)` in O(changes) under a temporary name
and renamed into place whole: one that exists is complete, unless a crash cut it
before the kernel wrote it back (a big dir is not flushed: see UNSYNCED, `trusted`).
A container mounts its chain top first; a chain deeper than MAX_LOWERS stands on the full checkout
(`overlayfs.lower_dir`) of an older layer at a STEP boundary (layerstack.py), so the flattened
dir changes once every STEP commits, not at each one. See docs/design-notes.md
("Layer dirs").

Modules: this one is where layer dirs live and how they are named; layerbuild.py
writes one (`prepare`, `Pending`, the writer threads), layerstack.py gives a
container's chain of them for mounting (`stack`, `ensure`).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from layerctl.store.debris import CACHE_TMP_PREFIX, boot_id
from layerctl.store.layers import read_layer

if TYPE_CHECKING:
    from layerctl.store.types import StoreLike

SHORT_LEN = 12
# A big layer dir is not flushed before its rename (syncfs: ~0.13 s of a Debian
# load): it holds this file, naming the boot that wrote it, until it is. After a
# crash, a dir marked by another boot may miss what the kernel had not written
# back, and is built again; one of this boot is whole (the page cache is).
UNSYNCED = "unsynced"
SETTLE = 60  # seconds: the kernel writes dirty data back after 30 (dirty_expire)


def root(store: StoreLike) -> str:
    return store.path("cache", "overlay")


def layer_path(store: StoreLike, layer_id: str) -> str:
    return os.path.join(root(store), layer_id)


def diff_path(store: StoreLike, layer_id: str) -> str:
    return os.path.join(root(store), layer_id, "diff")


def short_name(layer_id: str) -> str:
    """overlay2's short link name; the layer id is a hash already (no hashlib at
    start-up: status reads the stack)."""
    import base64

    return base64.b32encode(bytes.fromhex(layer_id)).decode()[:SHORT_LEN]


def short_path(store: StoreLike, layer_id: str) -> str:
    return os.path.join(root(store), "l", short_name(layer_id))


def exists(store: StoreLike, layer_id: str) -> bool:
    return os.path.isdir(diff_path(store, layer_id))


def trusted(store: StoreLike, layer_id: str) -> bool:
    """False for a layer dir (that exists) marked UNSYNCED by an earlier boot: the
    crash may have lost part of it. A mark of this boot older than SETTLE is
    dropped after one syncfs (by then it has little or nothing to write)."""
    mark = os.path.join(layer_path(store, layer_id), UNSYNCED)
    try:
        with open(mark, "rb") as f:
            boot = f.read().decode(errors="replace").strip()
            age = time.time() - os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return True
    if not boot or boot != boot_id():
        return False
    if age >= SETTLE:
        from .overlayfs import syncfs

        with contextlib.suppress(OSError):
            syncfs(os.path.dirname(mark))
            os.unlink(mark)
    return True


def entries(store: StoreLike) -> list[str]:
    """Layer ids with a complete layer dir (not those being built or pruned)."""
    try:
        names = os.listdir(root(store))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n != "l" and not n.startswith(CACHE_TMP_PREFIX)
                  and os.path.isdir(os.path.join(root(store), n, "diff")))


def make_link(layer_id: str, link: str) -> None:
    """The short link `link` to `layer_id`'s diff dir."""
    os.makedirs(os.path.dirname(link), exist_ok=True)
    tmp = f"{link}.{CACHE_TMP_PREFIX}{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(os.path.join("..", layer_id, "diff"), tmp)
    os.rename(tmp, link)  # atomic: a mount never reads a half-made link


def real_id(store: StoreLike, path: str) -> str | None:
    """The layer id a stack entry (short link, diff dir or checkout) stands for."""
    top = root(store) + "/"
    if path.startswith(top + "l/"):
        try:
            path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
        except OSError:
            return None
    if path.startswith(top):
        return path[len(top):].split("/", 1)[0]
    return None


def chain_ids(store: StoreLike, layer_id: str) -> list[str]:
    out = []
    current: str | None = layer_id
    while current is not None:
        out.append(current)
        current = read_layer(store, current).parent
    return out
