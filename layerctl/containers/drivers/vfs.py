"""The vfs driver: the container is a full checkout of its base layer.

    containers/ID/rootfs      the checkout, changed in place
    containers/ID/statcache   the stat cache below
    containers/ID/rootless    what a checkout without root could not apply (rootless.py)

Changes are found by walking the rootfs against a stat cache (like git's
index): an entry whose lstat matches the cache is known to equal the base and
is never re-hashed. The cache is labelled with the layer it was checked
against; after a commit moves the base, the paths of diff(label, base) are
candidates too, so the cache never has to be rewritten under a commit.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import stat
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from layerctl import beneath
from layerctl.atomic import write_file
from layerctl.store.checkout import checkout
from layerctl.store.diff import diff
from layerctl.store.fstree import walk
from layerctl.store.layers import read_layer

from .. import rootless
from ..changes import RACY_NS, scan
from ..state import destroy, save, state_dir
from ..view import View

if TYPE_CHECKING:
    from layerctl.store.fstree import DirRef
    from layerctl.store.repo import Store

    from ..changes import HashCache, Observed, Scan
    from ..state import Container

CACHE_NAME = "statcache"
# what a stat must match for an entry to be known clean
StatKey = tuple[int, int, int, int, int, int, int, int]
# path -> its StatKey when clean, None while a candidate (dirty or racy)
Entries = dict[bytes, StatKey | None]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_uid,
            st.st_gid, st.st_nlink)


def walk_rootfs(top: bytes) -> dict[bytes, os.stat_result]:
    """lstat of every entry below `top`, walked by directory fds (beneath.walk):
    what a running container removes meanwhile is absent, symlinks are not followed."""
    return {path: st for path, st, _fd in beneath.walk(top)}


def cache_path(state: str) -> str:
    return os.path.join(state, CACHE_NAME)


def load_cache(state: str) -> tuple[str | None, Entries]:
    try:
        with open(cache_path(state), "rb") as f:
            label, entries = marshal.load(f)
        return label, entries
    except (FileNotFoundError, EOFError, ValueError, TypeError):
        return None, {}


def save_cache(state: str, label: str, entries: Entries) -> None:
    write_file(cache_path(state), marshal.dumps((label, entries)), durable=False)


def prepare(store: Store, state: str, layer_id: str) -> None:
    """Check the layer out into rootfs/ and record every entry as clean; without
    root, also record what the checkout could not apply (the rootless map)."""
    rootfs = os.path.join(state, "rootfs")
    root = read_layer(store, layer_id).root
    checkout(store, root, rootfs)
    seen = walk_rootfs(os.fsencode(rootfs))
    if rootless.needed():
        rootless.save(state, rootless.record(store, root, os.fsencode(rootfs), seen))
    else:
        rootless.discard(state)
    # Just written by us and not visible to anyone yet: trusted even though racy.
    entries: Entries = {p: stat_key(st) for p, st in seen.items()}
    save_cache(state, layer_id, entries)


def remove_tree(path: str) -> None:
    """shutil.rmtree that also works without root on a rootfs whose image has
    read-only directories (Fedora's /root is 0550): they are made writable first."""
    import shutil  # removing only (shutil pulls bz2, lzma)

    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except PermissionError:
        if os.geteuid() == 0:
            raise
    stack = [os.fsencode(path)]
    while stack:
        d = stack.pop()
        st = os.lstat(d)
        if st.st_mode & 0o700 != 0o700:
            os.chmod(d, stat.S_IMODE(st.st_mode) | 0o700)
        with os.scandir(d) as it:
            stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
    shutil.rmtree(path)


def candidates(store: Store, state: str, base_id: str
               ) -> tuple[set[bytes], str | None, Entries]:
    """Paths that may differ from the base: (paths, cache label, cache entries)."""
    label, entries = load_cache(state)
    seen = walk_rootfs(os.fsencode(os.path.join(state, "rootfs")))
    cands = {p for p, st in seen.items() if entries.get(p) != stat_key(st)}
    cands.update(p for p in entries if p not in seen)
    if label is None:
        # No cache (lost or removed): everything is a candidate, including the base's
        # entries that are gone from the rootfs, which only the cache would name.
        cands.update(seen)
        cands.update(p for p, _meta, _obj in walk(store, read_layer(store, base_id).root))
        cands.discard(b"")
    elif label != base_id:
        old_root = read_layer(store, label).root
        new_root = read_layer(store, base_id).root
        cands.update(c.path for c in diff(store, old_root, new_root))
    return cands, label, entries


def refresh(state: str, base_id: str, entries: Entries, cands: set[bytes], changed: set[bytes],
            observed: dict[bytes, Observed], label: str | None) -> None:
    """Record candidates found equal to the base (and not racy) as clean."""
    now = time.time_ns()
    for p in cands:
        obs = observed.get(p)
        if p in changed:
            entries[p] = None  # dirty: a candidate until it equals the base again
            continue
        if obs is None:
            entries.pop(p, None)
            continue
        st = obs.st
        if now - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            entries[p] = stat_key(st)
        else:
            entries[p] = None  # racy: equal now, but check again next time
    if label is None and not cands:
        return
    try:
        save_cache(state, base_id, entries)
    except OSError:
        pass


class VfsDriver:
    name = "vfs"
    owned = True

    def prepare(self, store: Store, c: Container, layer_id: str) -> None:
        prepare(store, state_dir(store, c.id), layer_id)

    def top(self, store: Store, c: Container) -> str:
        return os.path.join(state_dir(store, c.id), "rootfs")

    root = top  # nothing to mount: the checkout is the filesystem

    def is_mounted(self, store: Store, c: Container) -> bool:
        return bool(c.extra.get("mounted"))  # `mount` only marks it, for `ps`

    def mount(self, store: Store, c: Container) -> str:
        c.extra["mounted"] = True
        save(store, c)
        return self.root(store, c)

    def unmount(self, store: Store, c: Container) -> None:
        c.extra["mounted"] = False
        save(store, c)

    def destroy(self, store: Store, c: Container) -> None:
        destroy(store, c)
        remove_tree(state_dir(store, c.id))  # what destroy's rmtree left: read-only dirs

    def view(self, store: Store, c: Container) -> View:
        return View(os.fsencode(self.top(store, c)), None)

    def scan(self, store: Store, c: Container, base_id: str, base_root: DirRef, view: View,
             hashes: HashCache) -> Scan:
        state = state_dir(store, c.id)
        cands, label, entries = candidates(store, state, base_id)
        result = scan(store, base_root, base_id, view, cands, hashes, rootless.load(state))
        refresh(state, base_id, entries, cands, {ch.path for ch in result.changes},
                result.observed, label)
        return result

    def rootless_map(self, store: Store, c: Container) -> rootless.RootlessMap | None:
        return rootless.load(state_dir(store, c.id))

    @contextlib.contextmanager
    def writable_root(self, store: Store, c: Container) -> Iterator[str]:
        yield self.top(store, c)

    def reset(self, store: Store, c: Container, old: str, target: str) -> None:
        state = state_dir(store, c.id)
        remove_tree(self.top(store, c))
        for name in (CACHE_NAME, "hashes"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(state, name))
        prepare(store, state, target)
        if old != target:
            store.set_ref(c.ref, old, target, f"reset container {c.name}")

    def graph_data(self, store: Store, c: Container) -> dict[str, str]:
        rootfs = self.top(store, c)
        return {"Dir": rootfs, "MergedDir": rootfs}

    def refuse_changes(self, c: Container, action: str) -> None:
        pass
