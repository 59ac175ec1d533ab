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


def _cache_dir(store: Store) -> str:
    return store.path("cache", "layers")


def cache_entries(store: Store) -> list[str]:
    """Layer ids with a cached lower dir (not those being extracted: debris.py's)."""
    try:
        names = os.listdir(_cache_dir(store))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(CACHE_TMP_PREFIX)
                  and os.path.isdir(os.path.join(_cache_dir(store), n)))


def _container_data(store: Store, c: cstate.Container) -> str | None:
    """The dir holding a container's own files (None for a tracked podman/docker one)."""
    if c.extra.get("external"):
        return None
    return os.path.join(cstate.state_dir(store, c.id),
                        "upper" if c.driver == "overlay" else "rootfs")


def container_active(store: Store, c: cstate.Container) -> str:
    """Why `c` is in use ("running", "mounted"), "" if it is stopped."""
    from layerctl import runtime
    from layerctl.containers.api import is_mounted

    if runtime.status(store, c.id)[0] == "running":
        return "running"
    with contextlib.suppress(OSError):
        if is_mounted(store, c):
            return "mounted"
    return ""


def used_lowers(store: Store) -> set[str]:
    """Layer ids whose cached dir a container uses or is about to use: every container's
    base ref (set before a create extracts it; also containers being created) and
    every state's `lower`, and any dir an overlay mount names."""
    used = set(store.refs_under(cstate.REF_PREFIX).values())
    for cid in cstate.all_ids(store):
        with contextlib.suppress(NotFound):
            lower = cstate.load(store, cid).lower
            if lower:
                used.add(lower)
    cache = _cache_dir(store) + "/"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            for part in line.split():
                for opt in part.split(","):
                    if opt.startswith("lowerdir="):
                        for d in opt[len("lowerdir="):].split(":"):
                            if d.startswith(cache):
                                used.add(d[len(cache):].split("/", 1)[0])
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
    for lid in cache_entries(store):
        out.cache.append(CacheUse(lid, disk_usage(os.path.join(_cache_dir(store), lid), seen),
                                  lid in used))

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
            name, lid, image_id(layers), layers[-1].author_time,
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
    cache: list[str] = field(default_factory=list)  # layer ids whose dir was removed
    reclaimed: int = 0
    notes: list[str] = field(default_factory=list)


def prune_containers(store: Store, out: Pruned | None = None) -> Pruned:
    """Remove stopped containers (not running, not mounted), as `rm` would; one that
    another command holds (its lock) or that became busy is left alone."""
    from layerctl.containers.api import remove

    out = out or Pruned()
    for c in cstate.list_containers(store):
        if c.extra.get("external") or container_active(store, c):
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


def prune_images(store: Store, all_images: bool = False, out: Pruned | None = None) -> Pruned:
    """Remove cached lower dirs no container uses; with `all_images` first untag the
    images no container was created from (their objects go at the next gc)."""
    from layerctl.images import list_images, remove_tag

    out = out or Pruned()
    if all_images:
        for name, _lid in list_images(store):
            if cstate.users_of(store, name):
                continue
            with contextlib.suppress(NotFound, Locked):
                remove_tag(store, name)
                out.images.append(str(name))
    used = used_lowers(store)
    for lid in cache_entries(store):
        if lid in used:
            continue
        size = _remove_cache_dir(store, lid)
        if size is not None:
            out.cache.append(lid)
            out.reclaimed += size
    return out


def _remove_cache_dir(store: Store, lid: str) -> int | None:
    """Move the dir aside (atomically: no mount ever sees half of it), then check
    again that nobody took it meanwhile; a container's ref is set before its create
    or mount looks the dir up, so one that did shows in `used_lowers` now."""
    final = os.path.join(_cache_dir(store), lid)
    trash = os.path.join(_cache_dir(store), f"{CACHE_TMP_PREFIX}{os.getpid()}-prune-{lid}")
    try:
        os.rename(final, trash)
    except FileNotFoundError:
        return None
    faults.point("prune.cache-aside")
    if lid in used_lowers(store):
        try:
            os.rename(trash, final)
        except OSError:  # extracted again meanwhile: that copy serves
            shutil.rmtree(trash, ignore_errors=True)
        return None
    size = disk_usage(trash, set())
    shutil.rmtree(trash, ignore_errors=True)
    return size


def prune_objects(store: Store, out: Pruned | None = None) -> Pruned:
    """Drop objects no ref reaches and that are older than GRACE, with git's own gc
    (a writer lands its objects before it moves its ref: younger ones may be one)."""
    out = out or Pruned()
    git = shutil.which("git")
    if git is None:
        out.notes.append("git is not installed: unreachable objects were left in place")
        return out
    objects = store.path("objects")
    before = disk_usage(objects, set())
    store.close()  # its open packs are about to be replaced
    r = subprocess.run(
        [git, "--git-dir", store.root, "-c", "gc.packRefs=false", "-c", "gc.writeCommitGraph=false",
         "-c", "gc.reflogExpire=never", "-c", "gc.reflogExpireUnreachable=never",
         "gc", f"--prune={GRACE}", "--quiet"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        why = (r.stderr.strip() or f"exit {r.returncode}").splitlines()[-1]
        raise LayerctlError(f"git gc failed: {why}")
    out.reclaimed += max(0, before - disk_usage(objects, set()))
    return out
