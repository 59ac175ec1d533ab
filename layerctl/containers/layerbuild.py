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
and renamed into place whole: one that exists is complete. A container mounts
its chain top first; a chain deeper than MAX_LOWERS stands on the full checkout
(`overlayfs.lower_dir`) of an older layer at a STEP boundary, so the flattened
dir changes once every STEP commits, not at each one. See docs/design-notes.md
("Layer dirs").
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias

from layerctl import faults
from layerctl.errors import Corrupt, LayerctlError, is_no_space
from layerctl.store import debris
from layerctl.store.checkout import apply_meta, create_entry
from layerctl.store.debris import CACHE_TMP_PREFIX
from layerctl.store.diff import DELETED, diff
from layerctl.store.fstree import DirRef, lookup, read_dir
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta
from layerctl.store.validate import bad_name, show

from .view import OPAQUE_XATTR

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from layerctl.store.blobread import BlobReader

# The kernel stacks at most 500 lower layers (OVL_MAX_STACK); Docker's overlay2
# refuses chains deeper than 128. Deeper chains stand on a flattened checkout.
MAX_LOWERS = 128
STEP = 64
SHORT_LEN = 12


def root(store: object) -> str:
    return store.path("cache", "overlay")


def layer_path(store: object, layer_id: str) -> str:
    return os.path.join(root(store), layer_id)


def diff_path(store: object, layer_id: str) -> str:
    return os.path.join(root(store), layer_id, "diff")


def short_name(layer_id: str) -> str:
    """overlay2's short link name; the layer id is a hash already (no hashlib at
    start-up: status reads the stack)."""
    import base64

    return base64.b32encode(bytes.fromhex(layer_id)).decode()[:SHORT_LEN]


def short_path(store: object, layer_id: str) -> str:
    return os.path.join(root(store), "l", short_name(layer_id))


def exists(store: object, layer_id: str) -> bool:
    return os.path.isdir(diff_path(store, layer_id))


def entries(store: object) -> list[str]:
    """Layer ids with a complete layer dir (not those being built or pruned)."""
    try:
        names = os.listdir(root(store))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n != "l" and not n.startswith(CACHE_TMP_PREFIX)
                  and os.path.isdir(os.path.join(root(store), n, "diff")))


def ensure(store: object, layer_id: str) -> str:
    """`layer_id`'s diff dir, built now from its changeset if missing."""
    if not exists(store, layer_id):
        build(store, layer_id)
    link = short_path(store, layer_id)
    if not os.path.islink(link):
        _make_link(store, layer_id, link)
    return diff_path(store, layer_id)


def for_mount(store: object, dirs: list[str]) -> list[str]:
    """`dirs` with each diff dir named by its short link (l/<short>), as overlay2
    does, so a chain's mount options stay short (and fit mount(2)'s page on
    kernels without `lowerdir+`)."""
    out = []
    for d in dirs:
        layer_id = real_id(store, d)
        out.append(short_path(store, layer_id)
                   if layer_id and d == diff_path(store, layer_id) else d)
    return out


def _make_link(store: object, layer_id: str, link: str) -> None:
    os.makedirs(os.path.dirname(link), exist_ok=True)
    tmp = f"{link}.{CACHE_TMP_PREFIX}{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(os.path.join("..", layer_id, "diff"), tmp)
    os.rename(tmp, link)  # atomic: a mount never reads a half-made link


def build(store: object, layer_id: str) -> None:
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

    def __init__(self, store: object) -> None:
        self.store = store
        self.reader: BlobReader | None = None

    def many(self) -> None:
        from layerctl.store.blobread import BlobReader

        if self.reader is None:
            self.reader = BlobReader.for_store(self.store)

    def submit(self, blob: bytes, size: int) -> object:
        if self.reader is not None:
            return self.reader.submit(blob, size)
        return _Ready(self.store.read_blob(blob))

    def stream(self, blob: bytes) -> Iterable[bytes] | None:
        return self.reader.stream(blob) if self.reader is not None else None

    def __enter__(self) -> _LazyReader:
        return self

    def __exit__(self, *_: object) -> None:
        if self.reader is not None:
            self.reader.close()


class _Ready:
    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def result(self) -> bytes:
        return self.value

    def done(self) -> bool:
        return True


class _Inline:
    """A pool that runs each job at once (a small layer: threads would cost more)."""

    def submit(self, fn: Callable[..., None], *args: object) -> _Ready:
        fn(*args)
        return _Ready(b"")

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class Pending:
    """A layer dir being written under a temporary name (`.tmp-<pid>-…`, removed as
    debris if this process dies), not yet any layer's: `land` finishes it (the
    writes still running on the builder's threads, directory metadata, sync) and
    names it."""

    def __init__(self, store: object, tmp: str, builder: _Builder | None) -> None:
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
        try:
            os.rename(self.tmp, layer_path(self.store, layer_id))
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


_landed_here: set[str] = set()  # layer dirs this process named (nothing else uses them yet)


def adopt(store: object, from_id: str, to_id: str) -> None:
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


def prepare(store: object, parent_root: DirRef | None, new_root: DirRef,
            reader: BlobReader | _LazyReader, layer_id: str | None = None) -> Pending:
    """Write the diff dir of the layer `new_root` over `parent_root` under a temporary
    name, contents from `reader` (a load or pull passes the contents it still holds).
    `layer_id`, when the layer is stored already, names its cached hardlink index."""
    top = root(store)
    os.makedirs(top, exist_ok=True)
    debris.clean_dead_dirs(top, CACHE_TMP_PREFIX)
    import tempfile

    tmp = tempfile.mkdtemp(prefix=f"{CACHE_TMP_PREFIX}{os.getpid()}-", dir=top)
    builder = None
    try:
        for name in ("diff", "work", "merged"):
            os.mkdir(os.path.join(tmp, name), 0o700)
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


def prepare_if_used(store: object, parent_root: DirRef | None, new_root: DirRef,
                    reader: BlobReader) -> Pending | None:
    """`prepare` at load or pull, when the contents are still in memory (no inflating,
    no second read of the trees' blobs), if containers here will use layer dirs (overlay
    works: root, the kernel has it); else None and nothing is written. A filesystem that
    refuses an entry leaves it to the first container (which says why)."""
    from .overlay import probe

    if probe() is not None:
        return None
    try:
        return prepare(store, parent_root, new_root, reader)
    except LayerctlError:
        return None


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
_Content: TypeAlias = "_Ready | Future[bytes] | Iterable[bytes]"
_MAX_AHEAD = 128 << 20  # contents read but not yet written
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _fsync(path: bytes) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: bytes) -> None:
    from .overlayfs import libc

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc().syncfs(fd)
    finally:
        os.close(fd)


def _symlink(path: bytes, meta: Meta, target: bytes, as_root: bool) -> None:
    os.symlink(target, path)
    apply_meta(path, meta, as_root)


def _node(store: object, path: bytes, meta: Meta, blob: bytes, as_root: bool) -> None:
    create_entry(store, path, meta, blob, as_root)  # a device or fifo: no content read
    apply_meta(path, meta, as_root)


def _write_file(path: bytes, meta: Meta, chunks: Iterable[bytes], as_root: bool) -> None:
    """A regular file with its content, then its metadata through the same fd
    (apply_meta's order and rules, without a path lookup per call)."""
    fd = os.open(path, _CREATE, 0o600)
    try:
        for data in chunks:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        apply_meta(fd, meta, as_root, follow=True)
    finally:
        os.close(fd)


class _Builder:
    """One layer's changeset written as an overlay upper dir. The walk (trees, parent
    dirs, whiteouts) runs on the calling thread; files, symlinks and nodes are written
    by WRITERS threads (creating an inode costs ~0.2 ms of kernel time here, which then
    runs beside the walk and the caller's next work); `finish` waits for them, makes
    the hardlinks and sets the directories' metadata last."""

    def __init__(self, store: object, layer_id: str | None, new_root: DirRef, dest: str,
                 reader: BlobReader | _LazyReader) -> None:
        self.store = store
        self.layer_id = layer_id
        self.root = new_root
        self.dest = os.fsencode(dest)
        self.reader = reader
        self.as_root = os.geteuid() == 0
        self.dirs: dict[bytes, Meta] = {}  # made here -> its metadata, applied last
        self.hidden: set[bytes] = set()  # whiteouts and opaque dirs written here
        self.written: list[bytes] = []  # regular files written (symlinks, nodes: no fsync)
        self.entries = 0  # everything written, for the choice of fsync or syncfs
        self.links: list[tuple[bytes, bytes]] = []  # (first member, another), made last
        self.jobs: list[Future[None] | _Ready] = []
        self.pool: ThreadPoolExecutor | _Inline | None = None

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
            if ch.new.kind == DIR:
                self._parents(ch.path)
                self._mkdir(ch.path, ch.new)
                if ch.opaque or (ch.old is not None and ch.old.kind != DIR):
                    os.setxattr(self._at(ch.path), OPAQUE_XATTR, b"y", follow_symlinks=False)
                    self.hidden.add(ch.path)
                continue
            files[ch.path] = (ch.new, ch.new_blob)
            linked = linked or ch.new.link is not None
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
        for path in sorted(self.dirs, key=lambda p: p.count(b"/") + bool(p), reverse=True):
            apply_meta(self._at(path), self.dirs[path], self.as_root)

    def abandon(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _write_files(self, files: dict[bytes, tuple[Meta, bytes]]) -> None:
        """Non-directories in walk order, regular files' contents read ahead on the
        reader's threads (what a load or pull still holds in memory is served as is)."""
        from layerctl.store.blobread import STREAM

        from .links import walk_key

        if not files:
            return
        pool: ThreadPoolExecutor | _Inline = _Inline()
        if len(files) > _SMALL:
            from concurrent.futures import ThreadPoolExecutor  # not at import: status reads us

            pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="layerdir")
            if isinstance(self.reader, _LazyReader):
                self.reader.many()
        self.pool = pool
        ahead: deque[tuple[Future[None] | _Ready, int]] = deque()  # jobs not known done
        held = 0  # bytes of their contents
        for path in sorted(files, key=walk_key):
            meta, blob = files[path]
            self._parents(path)
            self.entries += 1
            target = self._at(path)
            first = meta.link
            if first is not None and first in files and first != path:
                self.links.append((first, path))
                continue
            meta = meta.without_link()
            if meta.kind == FILE:
                while ahead and (ahead[0][0].done() or held > _MAX_AHEAD):
                    done, size = ahead.popleft()
                    done.result()  # contents in memory are bounded by what is written
                    held -= size
                data: _Content
                if meta.size <= STREAM:
                    data = self.reader.submit(blob, meta.size)
                else:  # inflated in chunks while written (or, loose, read whole now)
                    data = self.reader.stream(blob) or (self.store.read_blob(blob),)
                job = pool.submit(self._file, target, meta, data)
                self.jobs.append(job)
                ahead.append((job, meta.size))
                held += meta.size
                self.written.append(target)
            elif meta.kind == SYMLINK:
                link_to = self.reader.submit(blob, meta.size).result()  # a pack lookup
                self.jobs.append(pool.submit(_symlink, target, meta, link_to, self.as_root))
            else:
                self.jobs.append(pool.submit(_node, self.store, target, meta, blob,
                                             self.as_root))

    def _file(self, target: bytes, meta: Meta, data: _Content) -> None:
        # read ahead (a future, or blobread's or our _Ready), else chunks as inflated
        chunks = (data.result(),) if hasattr(data, "result") else data  # type: ignore[union-attr]
        _write_file(target, meta, chunks, self.as_root)

    def sync(self, top: bytes) -> None:
        """Flush what was written (and `top`, the dir about to be renamed)."""
        if self.entries + len(self.dirs) > FSYNC_EACH:
            _syncfs(top)  # one call for the whole layer
            return
        for path in self.written:
            _fsync(path)
        for path in self.dirs:
            _fsync(self._at(path))
        for d in (os.path.join(top, b"diff"), top):
            _fsync(d)

    def _whole_groups(self, files: dict[bytes, tuple[Meta, bytes]]) -> None:
        """A hardlink group the layer touches is written whole, so its members stay
        one inode in the merged view (a link cannot reach into another layer's dir)."""
        from . import links as links_mod

        groups = (links_mod.load(self.store, self.layer_id, self.root) if self.layer_id
                  else links_mod.compute(self.store, self.root))
        wanted = {m.link for m, _b in files.values() if m.link is not None}
        for first in wanted:
            for member in groups.get(first, [first]):
                if member not in files:
                    found = lookup(self.store, self.root, member)
                    if found is None or found[0].kind == DIR:
                        raise Corrupt(f"layer {self.name}: hardlink group of "
                                      f"{show(first)} names {show(member)}, not a file")
                    files[member] = found

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


def _check(path: bytes) -> None:
    """Defence in depth, as in checkout: only plain names, never `..` or `/`."""
    for name in path.split(b"/"):
        problem = bad_name(name)
        if problem:
            raise Corrupt(f"refusing to write layer dir entry {show(path)}: {problem}")


# -- stacks ---------------------------------------------------------------------------


def stack(store: object, layer_id: str, make: bool = True) -> list[str]:
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


def _dir(store: object, layer_id: str, make: bool) -> str:
    return ensure(store, layer_id) if make else diff_path(store, layer_id)


def real_id(store: object, path: str) -> str | None:
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


def chain_ids(store: object, layer_id: str) -> list[str]:
    out = []
    current: str | None = layer_id
    while current is not None:
        out.append(current)
        current = read_layer(store, current).parent
    return out


NOT_MADE = "<not made yet: made when a container first needs it>"


def describe(store: object, layer_id: str) -> str:
    """The lower dirs of a container on `layer_id`, `:`-joined as Docker prints
    LowerDir, or NOT_MADE while one of them does not exist yet."""
    dirs = stack(store, layer_id, make=False)
    return ":".join(dirs) if all(os.path.isdir(d) for d in dirs) else NOT_MADE


def graph_driver(store: object, layer_id: str) -> dict:
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
