"""Writing one layer's dir (layerdirs.py says where it lives): `prepare` writes the
layer's changeset as an overlay upper dir under a temporary name, on WRITERS threads
(`_Builder`), and its `Pending` lands it under the layer's id, made whole by one rename.
`build` does both for a stored layer (a container's first need, layerstack.ensure); a
load or pull calls `prepare_if_used` while the contents are still in memory, unless
mirror.py wrote a base layer's dir while its tar was applied.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, TypeAlias

from layerctl import atomic, faults
from layerctl.errors import Corrupt, LayerctlError, is_no_space
from layerctl.store import debris
from layerctl.store.debris import CACHE_TMP_PREFIX
from layerctl.store.diff import DELETED, diff
from layerctl.store.fstree import DirRef, lookup, read_dir
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta
from layerctl.store.validate import bad_name, show

from .lanes import Batches, Inline, Lanes
from .layerdirs import UNSYNCED, layer_path, root, trusted
from .layerfiles import (
    fsync_path,
    made_here,
    set_dir_metas,
    write_file,
    write_node,
    write_symlink,
)
from .view import OPAQUE_XATTR

if TYPE_CHECKING:
    from concurrent.futures import Future

    from layerctl.store.blobread import BlobReader, Ready
    from layerctl.store.repo import Store
    from layerctl.store.staging import Staging
    from layerctl.store.types import StoreLike


def build(store: Store, layer_id: str) -> None:
    """Write `layer_id`'s diff dir from its changeset, atomically."""
    layer = read_layer(store, layer_id)
    parent_root = read_layer(store, layer.parent).root if layer.parent else None
    with _LazyReader(store) as reader:
        pending = prepare(store, parent_root, layer.root, reader, layer_id)
        pending.complete()
    pending.land(layer_id)


class _LazyReader:
    """Contents for a lazy build: the store's own reads for a commit's few files; a
    BlobReader (every pack mapped, inflating on threads) once there are many."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reader: BlobReader | None = None

    def many(self) -> None:
        from layerctl.store.blobread import BlobReader

        if self.reader is None:
            self.reader = BlobReader.for_store(self.store)

    def submit(self, blob: bytes, size: int) -> _Result:
        if self.reader is not None:
            return self.reader.submit(blob, size)
        from layerctl.store.blobread import Ready

        return Ready(self.store.read_blob(blob))

    def stream(self, blob: bytes) -> Iterable[bytes] | None:
        return self.reader.stream(blob) if self.reader is not None else None

    def __enter__(self) -> _LazyReader:
        return self

    def __exit__(self, *_: object) -> None:
        if self.reader is not None:
            self.reader.close()


class _Result(Protocol):
    """Content read ahead: a future, or blobread.Ready."""

    def result(self) -> bytes: ...


class Pending:
    """A layer dir being written under a temporary name (`.tmp-<pid>-…`, removed as
    debris if this process dies), not yet any layer's: `land` finishes it (the
    writes still running on the builder's threads, directory metadata, sync) and
    names it."""

    def __init__(self, store: StoreLike, tmp: str, builder: _Builder | None) -> None:
        self.store = store
        self.tmp = tmp
        self.builder: _Builder | None = builder

    def complete(self) -> None:
        builder, self.builder = self.builder, None
        if builder is None:
            return
        try:
            builder.finish()
            builder.sync(os.fsencode(self.tmp))  # complete on disk before a rename uses it
        except OSError as e:
            self.discard()
            raise _refused(e, builder.layer_id) from None
        except BaseException:
            self.discard()
            raise

    def land(self, layer_id: str) -> None:
        """Rename it to `layer_id`'s dir (made whole by one rename); a dir another
        process made first wins and this one is dropped."""
        self.complete()
        faults.point("layerdir.rename")
        target = layer_path(self.store, layer_id)
        try:
            try:
                os.rename(self.tmp, target)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or trusted(self.store,
                                                                             layer_id):
                    raise
                # a dir an earlier boot left unsynced: set aside (debris if we die)
                aside = f"{self.tmp}-stale"
                os.rename(target, aside)
                os.rename(self.tmp, target)
                shutil.rmtree(aside, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise _refused(e, layer_id) from None
            return
        _landed_here.add(layer_id)

    def discard(self) -> None:
        builder, self.builder = self.builder, None
        if builder is not None:
            builder.abandon()
        shutil.rmtree(self.tmp, ignore_errors=True)
        # a failed load leaves the store as it found it: no empty cache/overlay (a
        # builder racing this rmdir makes the dir again: see prepare)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.tmp))


_landed_here: set[str] = set()  # layer dirs this process named (nothing else uses them yet)


def adopt(store: StoreLike, from_id: str, to_id: str) -> None:
    """Give `to_id`, a sibling commit of `from_id` (same parent, same tree: a pull's top
    carrying the image's own config bytes), the dir this process just landed for
    `from_id`, whose commit no image names. Anything else is left to be built lazily."""
    if from_id == to_id or from_id not in _landed_here:
        return
    a, b = read_layer(store, from_id), read_layer(store, to_id)
    if (a.parent, a.root) != (b.parent, b.root):
        return
    with contextlib.suppress(OSError):  # to_id's dir exists, or from_id's was pruned
        os.rename(layer_path(store, from_id), layer_path(store, to_id))
        _landed_here.discard(from_id)


def prepare(store: Store | Staging, parent_root: DirRef | None, new_root: DirRef,
            reader: BlobReader | _LazyReader, layer_id: str | None = None) -> Pending:
    """Write the diff dir of the layer `new_root` over `parent_root` under a temporary
    name, contents from `reader` (a load or pull passes the contents it still holds).
    `layer_id`, when the layer is stored already, names its cached hardlink index."""
    tmp = new_tmp(store)
    builder = None
    try:
        faults.point("layerdir.write")
        builder = _Builder(store, layer_id, new_root, os.path.join(tmp, "diff"), reader)
        builder.run(parent_root)
    except OSError as e:  # the cache's filesystem refuses an entry (or is full)
        Pending(store, tmp, builder).discard()
        raise _refused(e, layer_id) from None
    except BaseException:
        Pending(store, tmp, builder).discard()
        raise
    return Pending(store, tmp, builder)


def new_tmp(store: StoreLike) -> str:
    """A new layer dir's temporary home (`.tmp-<pid>-…`, debris once this process is
    gone), with its empty diff, work and merged dirs."""
    top = root(store)
    os.makedirs(top, exist_ok=True)
    debris.clean_dead_dirs(top, CACHE_TMP_PREFIX)
    import tempfile

    try:
        tmp = tempfile.mkdtemp(prefix=f"{CACHE_TMP_PREFIX}{os.getpid()}-", dir=top)
    except FileNotFoundError:  # another process's discard removed the empty dir just now
        os.makedirs(top, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f"{CACHE_TMP_PREFIX}{os.getpid()}-", dir=top)
    try:
        for name in ("diff", "work", "merged"):
            os.mkdir(os.path.join(tmp, name), 0o700)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def prepare_if_used(store: Store | Staging, parent_root: DirRef | None, new_root: DirRef,
                    reader: BlobReader) -> Pending | None:
    """`prepare` at load or pull, when the contents are still in memory (no inflating,
    no second read of the trees' blobs), if containers here will use layer dirs (overlay
    works: root, the kernel has it); else None and nothing is written. A filesystem that
    refuses an entry leaves it to the first container (which says why)."""
    from .overlayfs import probe

    if probe() is not None:
        return None
    try:
        return prepare(store, parent_root, new_root, reader)
    except LayerctlError:
        return None


def diff_id_and_dir(store: Store | Staging, parent_root: DirRef | None, new_root: DirRef,
                    reader: BlobReader) -> tuple[str, Pending | None]:
    """The DiffID pass of a layer just applied at load or pull (write_changeset), with
    its layer dir written on the builder's threads meanwhile (prepare_if_used): (our
    DiffID, the Pending dir or None). A failure discards the dir."""
    from layerctl.changeset.write import write_changeset

    layer_dir = prepare_if_used(store, parent_root, new_root, reader)
    try:
        ours, _size = write_changeset(store, parent_root, new_root, None, reader)
        if layer_dir is not None:
            layer_dir.complete()
    except BaseException:
        if layer_dir is not None:
            layer_dir.discard()
        raise
    return ours, layer_dir


def _refused(e: OSError, layer_id: str | None) -> OSError | LayerctlError:
    if is_no_space(e):
        return e  # said once, naming the store, by the CLI
    what = layer_id[:12] if layer_id else "a new layer"
    where = os.fsdecode(e.filename) if e.filename else what
    return LayerctlError(f"cannot build the layer dir of {what}: {where}: {e.strerror or e}")


# Up to this many entries a layer dir is flushed entry by entry (a commit's few
# changes); more, and one syncfs is cheaper than thousands of journal commits.
FSYNC_EACH = 256
WRITERS = 2  # threads creating a layer dir's files
_SMALL = 64  # up to this many entries (a commit's changes) are written inline
# a file's content: read ahead (BlobReader / _LazyReader.submit), or chunks as inflated
_Content: TypeAlias = "_Result | Iterable[bytes]"
_MAX_AHEAD = 128 << 20  # contents read but not yet written


class _Builder:
    """One layer's changeset written as an overlay upper dir. The walk (trees, parent
    dirs, whiteouts) runs on the calling thread; files, symlinks and nodes are written
    by WRITERS threads (creating an inode costs ~0.2 ms of kernel time here, which then
    runs beside the walk and the caller's next work); `finish` waits for them, makes
    the hardlinks and sets the directories' metadata last."""

    def __init__(self, store: Store | Staging, layer_id: str | None, new_root: DirRef, dest: str,
                 reader: BlobReader | _LazyReader) -> None:
        self.store = store
        self.layer_id = layer_id
        self.root = new_root
        self.dest = os.fsencode(dest)
        self.reader = reader
        self.as_root = os.geteuid() == 0
        self.made = made_here(self.dest)
        self.dirs: dict[bytes, Meta] = {}  # made here -> its metadata, applied last
        self.hidden: set[bytes] = set()  # whiteouts and opaque dirs written here
        self.written: list[bytes] = []  # regular files written (symlinks, nodes: no fsync)
        self.entries = 0  # everything written, for the choice of fsync or syncfs
        self.links: list[tuple[bytes, bytes]] = []  # (first member, another), made last
        self.jobs: list[Future[None] | Ready] = []
        self.pool: Lanes | Inline | None = None

    @property
    def name(self) -> str:
        return self.layer_id[:12] if self.layer_id else "new layer"

    def run(self, parent_root: DirRef | None) -> None:
        files: dict[bytes, tuple[Meta, bytes]] = {}
        linked = False
        for ch in diff(self.store, parent_root, self.root):
            _check(ch.path)
            if ch.status == DELETED:
                if not self._below_hidden(ch.path):
                    self._parents(ch.path)
                    os.mknod(self._at(ch.path), stat.S_IFCHR | 0o600, 0)
                    self.hidden.add(ch.path)
                    self.entries += 1
                continue
            new, blob = ch.new, ch.new_blob
            assert new is not None  # only a deletion has no new side
            if new.kind == DIR:
                self._parents(ch.path)
                self._mkdir(ch.path, new)
                if ch.opaque or (ch.old is not None and ch.old.kind != DIR):
                    os.setxattr(self._at(ch.path), OPAQUE_XATTR, b"y", follow_symlinks=False)
                    self.hidden.add(ch.path)
                continue
            assert blob is not None  # a non-directory has its content's blob
            files[ch.path] = (new, blob)
            linked = linked or new.link is not None
        if linked and parent_root is not None:  # a base layer's groups are all here
            self._whole_groups(files)
        self.dirs[b""] = read_dir(self.store, self.root).own
        self._write_files(files)

    def finish(self) -> None:
        """Wait for the writers (raising the first error), then hardlinks and the
        directories' metadata (deepest first: writing in a directory changes its mtime)."""
        try:
            for job in self.jobs:
                job.result()
        finally:
            self.abandon()
        for first, path in self.links:
            os.link(self._at(first), self._at(path), follow_symlinks=False)
        set_dir_metas([(self._at(p), m) for p, m in self.dirs.items()], self.as_root)

    def abandon(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _write_files(self, files: dict[bytes, tuple[Meta, bytes]]) -> None:
        """Non-directories in walk order, regular files' contents read ahead on the
        reader's threads (what a load or pull still holds in memory is served as is)."""
        from layerctl.store.blobread import STREAM
        from layerctl.store.fstree import walk_key

        if not files:
            return
        pool: Lanes | Inline = Inline()
        if len(files) > _SMALL:
            pool = Lanes(WRITERS)
            if isinstance(self.reader, _LazyReader):
                self.reader.many()
        self.pool = pool
        batches = Batches(pool, self.jobs, _MAX_AHEAD)
        for path in sorted(files, key=walk_key):
            meta, blob = files[path]
            self._parents(path)
            self.entries += 1
            target = self._at(path)
            first = meta.link
            if first is not None and first != path:
                if first not in files:  # every member is here (whole groups, or a base)
                    raise Corrupt(f"layer {self.name}: hardlink group of {show(path)} "
                                  f"names {show(first)}, not a file of the layer")
                self.links.append((first, path))
                continue
            meta = meta.without_link()
            if meta.kind == FILE:
                data: _Content
                if meta.size <= STREAM:
                    data = self.reader.submit(blob, meta.size)
                else:  # inflated in chunks while written (or, loose, read whole now)
                    data = self.reader.stream(blob) or (self.store.read_blob(blob),)
                batches.add(target, meta.size, self._file, target, meta, data)
                self.written.append(target)
            elif meta.kind == SYMLINK:
                link_to = self.reader.submit(blob, meta.size).result()  # a pack lookup
                batches.add(target, 0, write_symlink, target, meta, link_to, self.as_root)
            else:
                batches.add(target, 0, write_node, target, meta, self.as_root)
        batches.flush()

    def _file(self, target: bytes, meta: Meta, data: _Content) -> None:
        # read ahead (a future, or blobread.Ready), else chunks as inflated
        chunks = (data.result(),) if hasattr(data, "result") else data
        write_file(target, meta, chunks, self.as_root, self.made)

    def sync(self, top: bytes) -> None:
        settle(top, self.entries, self.written, [self._at(p) for p in self.dirs],
               debris.boot_id())

    def _whole_groups(self, files: dict[bytes, tuple[Meta, bytes]]) -> None:
        """A hardlink group the layer touches is written whole, so its members stay
        one inode in the merged view (a link cannot reach into another layer's dir)."""
        from layerctl.store import repo  # not at import: status reads the stack

        from . import links as links_mod

        # a layer id is given (build) for a stored layer only, so with the store itself
        groups = (links_mod.load(self.store, self.layer_id, self.root)
                  if self.layer_id and isinstance(self.store, repo.Store)
                  else links_mod.compute(self.store, self.root))
        wanted = {m.link for m, _b in files.values() if m.link is not None}
        for first in wanted:
            for member in groups.get(first, [first]):
                if member not in files:
                    found = lookup(self.store, self.root, member)
                    if found is None or isinstance(found[1], DirRef):
                        raise Corrupt(f"layer {self.name}: hardlink group of "
                                      f"{show(first)} names {show(member)}, not a file")
                    files[member] = (found[0], found[1])

    def _at(self, path: bytes) -> bytes:
        return self.dest + b"/" + path if path else self.dest

    def _below_hidden(self, path: bytes) -> bool:
        parent = path.rpartition(b"/")[0]
        while parent:
            if parent in self.hidden:
                return True
            parent = parent.rpartition(b"/")[0]
        return False

    def _parents(self, path: bytes) -> None:
        parent = path.rpartition(b"/")[0]
        if not parent or parent in self.dirs:
            return
        self._parents(parent)
        found = lookup(self.store, self.root, parent)
        if found is None or found[0].kind != DIR:
            raise Corrupt(f"layer {self.name}: {show(path)} has no parent directory")
        self._mkdir(parent, found[0])

    def _mkdir(self, path: bytes, meta: Meta) -> None:
        if path not in self.dirs:
            os.mkdir(self._at(path), 0o700)
        self.dirs[path] = meta


def settle(top: bytes, entries: int, written: list[bytes], dirs: list[bytes],
           boot: str) -> None:
    """Make `top`, a layer dir about to be renamed, safe to use after a crash: a few
    entries are flushed; more are marked UNSYNCED with this boot's id (flushed itself
    before the rename), or without one flushed by one syncfs."""
    if entries + len(dirs) > FSYNC_EACH:
        if boot:  # the mark and its entry in `top` are durable once this returns
            atomic.write_file(os.path.join(os.fsdecode(top), UNSYNCED),
                              boot.encode() + b"\n", mode=0o600)
            return
        from .overlayfs import syncfs

        syncfs(top)  # one call for the whole layer
        return
    for path in written:
        fsync_path(path)
    for path in dirs:
        fsync_path(path)
    for d in (os.path.join(top, b"diff"), top):
        fsync_path(d)


def _check(path: bytes) -> None:
    """Defence in depth, as in checkout: only plain names, never `..` or `/`."""
    for name in path.split(b"/"):
        problem = bad_name(name)
        if problem:
            raise Corrupt(f"refusing to write layer dir entry {show(path)}: {problem}")
