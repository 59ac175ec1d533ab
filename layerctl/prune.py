"""`system df` and the prune commands: what the store holds on disk, and removing
what nothing uses (see docs/design-notes.md "Prune and system df").

Sizes are disk usage (st_blocks * 512, each inode once), as `du -s -B1` counts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.containers import state as cstate
from layerctl.errors import Conflict, LayerctlError, Locked, NotFound
from layerctl.store.debris import CACHE_TMP_PREFIX

if TYPE_CHECKING:
    from layerctl.store.repo import Store

GRACE = "1.hour.ago"  # unreachable objects younger than this survive `system prune`


# -- measuring ------------------------------------------------------------------------


def disk_usage(path: str, seen: set[tuple[int, int]]) -> int:
    """Bytes `path` takes on disk (blocks), inodes in `seen` not counted again."""
    total = 0
    stack = [path]
    while stack:
        top = stack.pop()
        try:
            st = os.lstat(top)
        except FileNotFoundError:
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            total += st.st_blocks * 512
        if os.path.isdir(top) and not os.path.islink(top):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                stack.extend(e.path for e in os.scandir(top))
    return total


CHECKOUT, LAYER_DIR = "checkout", "layer dir"


def _cache_dir(store: object, kind: str) -> str:
    from layerctl.containers import layerdirs

    return store.path("cache", "layers") if kind == CHECKOUT else layerdirs.root(store)


def _entry_path(store: object, kind: str, lid: str) -> str:
    return os.path.join(_cache_dir(store, kind), lid)


def cache_entries(store: object) -> list[tuple[str, str]]:
    """(kind, layer id) of every complete cached dir: the per-layer diff dirs and the
    full checkouts (a deep chain's flattened bottom, or an older store's lower
    dirs); not those being built or pruned (debris.py's)."""
    from layerctl.containers import layerdirs

    out = [(LAYER_DIR, lid) for lid in layerdirs.entries(store)]
    try:
        names = os.listdir(_cache_dir(store, CHECKOUT))
    except FileNotFoundError:
        names = []
    out += sorted((CHECKOUT, n) for n in names if not n.startswith(CACHE_TMP_PREFIX)
                  and os.path.isdir(_entry_path(store, CHECKOUT, n)))
    return out


def _container_data(store: Store, c: cstate.Container) -> str | None:
    """The dir holding a container's own files (None for a tracked podman/docker one)."""
    from layerctl.containers.drivers import driver_for

    driver = driver_for(c)
    return driver.top(store, c) if driver.owned else None


def container_active(store: Store, c: cstate.Container) -> str:
    """Why `c` is in use ("running", "mounted"), "" if it is stopped."""
    from layerctl import runtime
    from layerctl.containers.lifecycle import is_mounted

    if runtime.status(store, c.id)[0] == "running":
        return "running"
    with contextlib.suppress(OSError):
        if is_mounted(store, c):
            return "mounted"
    return ""


def _kind_of(store: object, path: str) -> tuple[str, str] | None:
    """(kind, layer id) of a lower dir path (a diff dir, its short link, a checkout)."""
    from layerctl.containers import layerdirs

    lid = layerdirs.real_id(store, path)
    if lid is not None:
        return LAYER_DIR, lid
    checkouts = _cache_dir(store, CHECKOUT) + "/"
    if path.startswith(checkouts):
        return CHECKOUT, path[len(checkouts):].split("/", 1)[0]
    return None


def used_lowers(store: object) -> set[tuple[str, str]]:
    """(kind, layer id) of the cached dirs in use or about to be: every layer dir of a
    tagged image's chain; the stack (layer dirs, the checkout it stands on) of every
    container's base ref (set before a create builds its dirs; also containers
    being created) and of every state's `lower`; and any dir an overlay mount names."""
    from layerctl.containers import layerdirs, layerstack
    from layerctl.images import list_images

    used: set[tuple[str, str]] = set()
    tops = set(store.refs_under(cstate.REF_PREFIX).values())
    for cid in cstate.all_ids(store):
        with contextlib.suppress(NotFound):
            lower = cstate.load(store, cid).lower
            if lower:
                tops.add(lower)
    for top in tops:
        with contextlib.suppress(LayerctlError):
            for d in layerstack.stack(store, top, make=False):
                found = _kind_of(store, d)
                if found:
                    used.add(found)
    for _name, lid in list_images(store):
        with contextlib.suppress(LayerctlError):
            used.update((LAYER_DIR, i) for i in layerdirs.chain_ids(store, lid))
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            for part in line.split():
                for opt in part.split(","):
                    key, _, value = opt.partition("=")
                    if key in ("lowerdir", "lowerdir+"):
                        for d in value.split(":"):
                            found = _kind_of(store, d)
                            if found:
                                used.add(found)
    return used


# -- system df ------------------------------------------------------------------------


@dataclass
class ImageUse:
    name: object  # images.ImageName
    layer_id: str
    image_id: str
    created: int
    size: int
    shared: int
    containers: int


@dataclass
class ContainerUse:
    container: cstate.Container
    size: int
    active: str


@dataclass
class CacheUse:
    layer_id: str
    size: int
    used: bool
    kind: str = LAYER_DIR


@dataclass
class Usage:
    objects_size: int = 0
    images: list[ImageUse] = field(default_factory=list)
    images_reclaimable: int = 0
    containers: list[ContainerUse] = field(default_factory=list)
    cache: list[CacheUse] = field(default_factory=list)


def usage(store: Store, verbose: bool = True) -> Usage:
    """What `system df` shows. Hardlinks count once across everything measured."""
    from layerctl.images import chain, image_id, layer_sizes, list_images

    seen: set[tuple[int, int]] = set()
    out = Usage(objects_size=disk_usage(store.path("objects"), seen))
    containers = cstate.list_containers(store)
    for c in containers:
        data = _container_data(store, c)
        size = disk_usage(data, seen) if data else 0
        out.containers.append(ContainerUse(c, size, container_active(store, c)))
    used = used_lowers(store)
    for kind, lid in cache_entries(store):
        size = disk_usage(_entry_path(store, kind, lid), seen)
        out.cache.append(CacheUse(lid, size, (kind, lid) in used, kind))

    users: dict[str, int] = {}
    for c in containers:
        users[c.image] = users.get(c.image, 0) + 1
    chains = {}
    for name, lid in list_images(store):
        with contextlib.suppress(LayerctlError):
            chains[name] = (lid, chain(store, lid))
    owners: dict[str, int] = {}  # layer id -> images whose chain holds it
    for _lid, layers in chains.values():
        for layer in layers:
            owners[layer.id] = owners.get(layer.id, 0) + 1
    kept: set[str] = set()  # layers an image in use or a container's base reaches
    for ref in store.refs_under(cstate.REF_PREFIX).values():
        with contextlib.suppress(LayerctlError):
            kept.update(layer.id for layer in chain(store, ref))
    for name, (lid, layers) in chains.items():
        n = sum(count for image, count in users.items() if _same_image(image, name))
        sizes = list(zip((layer.id for layer in layers), layer_sizes(store, layers),
                         strict=True))
        if n:
            kept.update(layer.id for layer in layers)
        out.images.append(ImageUse(
            name, lid, image_id(layers, store), layers[-1].author_time,
            sum(s for _, s in sizes),
            sum(s for layer, s in sizes if owners[layer] > 1), n))
    # The estimate of what untagging unused images and a gc would free: the content
    # of the layers nothing in use reaches (objects are compressed: at most that).
    loose = {}
    for _lid, layers in chains.values():
        unkept = [layer for layer in layers if layer.id not in kept]
        loose.update(zip((layer.id for layer in unkept), layer_sizes(store, unkept),
                         strict=True))
    out.images_reclaimable = min(out.objects_size, sum(loose.values()))
    return out


def _same_image(text: str, name: object) -> bool:
    from layerctl.errors import InvalidName
    from layerctl.images import parse_name

    try:
        return parse_name(text) == name
    except InvalidName:
        return False


# -- prune ----------------------------------------------------------------------------


@dataclass
class Pruned:
    containers: list[str] = field(default_factory=list)  # ids
    images: list[str] = field(default_factory=list)  # image names untagged
    cache: list[tuple[str, str]] = field(default_factory=list)  # (kind, layer id) removed
    reclaimed: int = 0
    notes: list[str] = field(default_factory=list)


def prune_containers(store: Store, out: Pruned | None = None) -> Pruned:
    """Remove stopped containers (not running, not mounted), as `rm` would; one that
    another command holds (its lock) or that became busy is left alone."""
    from layerctl.containers.drivers import driver_for
    from layerctl.containers.lifecycle import remove

    out = out or Pruned()
    for c in cstate.list_containers(store):
        if not driver_for(c).owned or container_active(store, c):
            continue
        data = _container_data(store, c)
        size = disk_usage(cstate.state_dir(store, c.id), set()) if data else 0
        try:
            remove(store, c.id)  # under the container's lock; refuses if mounted/running
        except (Conflict, Locked, NotFound):
            continue
        out.containers.append(c.id)
        out.reclaimed += size
    return out


def prune_images(store: object, all_images: bool = False, out: Pruned | None = None) -> Pruned:
    """Remove the layer dirs no image or container uses and the checkouts no container
    uses; with `all_images` first untag the images no container was created from
    (their objects go at the next gc)."""
    from layerctl.images import list_images, remove_tag

    out = out or Pruned()
    if all_images:
        for name, _lid in list_images(store):
            if cstate.users_of(store, name):
                continue
            with contextlib.suppress(NotFound, Locked):
                remove_tag(store, name)
                out.images.append(str(name))
    return prune_cache(store, out)


def prune_cache(store: object, out: Pruned | None = None,
                only: set[str] | None = None) -> Pruned:
    """Remove the cached dirs `used_lowers` does not name; `only`: just the layer dirs
    of these layers (`rmi`: the dirs of the untagged image's chain nothing else uses)."""
    out = out or Pruned()
    used = used_lowers(store)
    for entry in cache_entries(store):
        if entry in used or (only is not None and (entry[0] != LAYER_DIR
                                                   or entry[1] not in only)):
            continue
        size = _remove_cache_dir(store, *entry)
        if size is not None:
            out.cache.append(entry)
            out.reclaimed += size
    return out


def _remove_cache_dir(store: object, kind: str, lid: str) -> int | None:
    """Move the dir aside (atomically: no mount ever sees half of it), then check
    again that nobody took it meanwhile; a container's ref is set before its create
    or mount looks the dir up, so one that did shows in `used_lowers` now."""
    final = _entry_path(store, kind, lid)
    trash = os.path.join(_cache_dir(store, kind), f"{CACHE_TMP_PREFIX}{os.getpid()}-prune-{lid}")
    try:
        os.rename(final, trash)
    except FileNotFoundError:
        return None
    faults.point("prune.cache-aside")
    if (kind, lid) in used_lowers(store):
        try:
            os.rename(trash, final)
        except OSError:  # extracted again meanwhile: that copy serves
            shutil.rmtree(trash, ignore_errors=True)
        return None
    size = disk_usage(trash, set())
    shutil.rmtree(trash, ignore_errors=True)
    return size


def _forget_history(store: object) -> None:
    """What only the undo history still holds goes with a prune, as in Docker, where
    a pruned image is gone: the reflogs of removed tags and containers (git's gc then
    expires entries no current tip reaches) and the undo snapshots of removed
    containers. `undo` of what a prune removed refuses in one line (objects missing)."""
    from layerctl.containers.snapshots import UNDO_PREFIX
    from layerctl.containers.state import list_containers

    live = {c.id for c in list_containers(store)}
    for ref, value in store.refs_under(UNDO_PREFIX).items():
        if ref[len(UNDO_PREFIX):].split("/", 1)[0] not in live:
            store.delete_ref(ref, value, "prune: container removed")
    top = store.path("logs")
    for directory, _dirs, files in os.walk(top):
        for name in files:
            ref = os.path.relpath(os.path.join(directory, name), top)
            if ref.startswith("refs/") and store.ref(ref) is None:
                os.unlink(os.path.join(directory, name))


def prune_objects(store: object, out: Pruned | None = None) -> Pruned:
    """Drop objects no ref reaches and that are older than GRACE, with git's own gc
    (a writer lands its objects before it moves its ref: younger ones may be one)."""
    out = out or Pruned()
    git = shutil.which("git")
    if git is None:
        out.notes.append("git is not installed: unreachable objects were left in place")
        return out
    objects = store.path("objects")
    before = disk_usage(objects, set())
    _forget_history(store)
    store.close()  # its open packs are about to be replaced
    r = subprocess.run(
        [git, "--git-dir", store.root, "-c", "gc.packRefs=false", "-c", "gc.writeCommitGraph=false",
         "-c", "gc.reflogExpire=never", "-c", "gc.reflogExpireUnreachable=now",
         "gc", f"--prune={GRACE}", "--quiet"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        why = (r.stderr.strip() or f"exit {r.returncode}").splitlines()[-1]
        raise LayerctlError(f"git gc failed: {why}")
    out.reclaimed += max(0, before - disk_usage(objects, set()))
    return out
