"""A layer's changeset tar: the one writer (save, push, export, import, fetch and fsck
DiffIDs), with file contents read ahead on worker threads (blobread) while the tar is
written."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

from layerctl.changeset.tar import ROOT_DEFAULT, LayerTarWriter, changeset_changes, root_change
from layerctl.errors import BadInput
from layerctl.store.blobread import STREAM, BlobReader
from layerctl.store.diff import DELETED
from layerctl.store.fstree import DirRef, read_dir
from layerctl.store.meta import FILE, SYMLINK, Meta

if TYPE_CHECKING:
    from layerctl.store.blobread import Pending
    from layerctl.store.repo import Store
    from layerctl.store.staging import Staging

# what _emit gets for an entry: nothing to read, "stream" (a big blob, read in chunks
# as it is written) or a read already under way
_Job: TypeAlias = "None | str | Pending"
# one entry of the tar: path, its metadata (None: a whiteout), its content's blob id
# (files and symlinks), whether it is an opaque directory
_Entry: TypeAlias = "tuple[bytes, Meta | None, bytes | None, bool]"

_WH = b".wh."
_WINDOW = 256  # changes read ahead
_MAX_AHEAD = 128 << 20  # bytes of content read ahead
_CONTENT = (FILE, SYMLINK)


def write_changeset(
    store: Store | Staging,
    parent: DirRef | None,
    layer: DirRef,
    out: BinaryIO | None = None,
    reader: BlobReader | None = None,
    tar: LayerTarWriter | None = None,
    strict: bool = False,
    diffing: bool = False,
    layer_dir: bytes | None = None,
) -> tuple[str, int]:
    """Write the changeset tar of `layer` against `parent` to `out` (None: hash only),
    or into `tar`; returns (DiffID, tar size).

    `layer_dir`: a directory holding the layer's files as plain files (its overlay
    layer dir); a regular file's content is read from there when its blob id is the
    stored one (BlobReader.submit_file), else from the store: the same bytes either way.

    With `strict`, a name starting with `.wh.` is refused: in a layer tar it would be
    read back as a whiteout, and the file lost. A base layer (no parent) is written
    from one walk of its tree, every entry added; `diffing` makes it go through the
    tree diff against the empty tree instead (the same bytes: tests compare them)."""
    own = reader is None
    reader = reader or BlobReader.for_store(store)
    try:
        tar = tar or LayerTarWriter(out)
        if parent is None and not diffing:
            entries = _base_entries(store, layer, tar)
        else:
            root = root_change(store, parent, layer)
            if root is not None:
                tar.add(b".", root)
            entries = _changed_entries(store, parent, layer)
        queue: deque[tuple[bytes, Meta | None, bytes | None, bool, _Job, int]] = deque()
        ahead = 0
        submit = reader.submit
        submit_file = reader.submit_file
        below = layer_dir + b"/" if layer_dir is not None else None
        for path, meta, blob, opaque in entries:
            if strict and meta is not None and _WH in path:
                _check_name(path)
            job: _Job = None
            size = 0
            if meta is not None and meta.link is None and meta.kind in _CONTENT:
                assert blob is not None  # a file or symlink has content
                size = meta.size
                if size > STREAM:
                    job = "stream"
                elif below is not None and meta.kind == FILE:
                    job = submit_file(below + path, blob, size)
                else:
                    job = submit(blob, size)
            queue.append((path, meta, blob, opaque, job, size))
            ahead += size
            while len(queue) > _WINDOW or ahead > _MAX_AHEAD:
                ahead -= _emit(tar, reader, *queue.popleft())
        while queue:
            _emit(tar, reader, *queue.popleft())
        return tar.close(), tar.size
    finally:
        if own:
            reader.close()


def _changed_entries(store: Store | Staging, parent: DirRef | None,
                     layer: DirRef) -> Iterator[_Entry]:
    for change in changeset_changes(store, parent, layer):
        if change.status == DELETED:
            yield change.path, None, None, False
        else:
            yield change.path, change.new, change.new_blob, change.opaque


def _base_entries(store: Store | Staging, layer: DirRef, tar: LayerTarWriter) -> Iterator[_Entry]:
    """Every entry of `layer` in walk order (what the diff against the empty tree
    gives, without building a Change per entry or checking for missing parents:
    a walk puts each directory before its entries); the root's `./` entry goes
    straight into `tar` first when it differs from the empty filesystem's root."""
    top = read_dir(store, layer)
    if top.own != ROOT_DEFAULT:
        tar.add(b".", top.own)
    # depth first, parents before children, names sorted: fstree.walk_children's order
    stack = [(top, b"", iter(top.names()))]
    while stack:
        d, prefix, names = stack[-1]
        dirs, files = d.dirs, d.files
        for name in names:
            path = prefix + b"/" + name if prefix else name
            if name in dirs:
                sub = read_dir(store, dirs[name])
                yield path, sub.own, None, False
                stack.append((sub, path, iter(sub.names())))
                break
            meta, blob = files[name]
            yield path, meta, blob, False
        else:
            stack.pop()


def _check_name(path: bytes) -> None:
    for part in path.split(b"/"):
        if part.startswith(_WH):
            shown = "/" + path.decode("utf-8", "backslashreplace")
            raise BadInput(f"{shown}: a layer tar cannot hold a file named '.wh.*' (it would "
                           "be read back as a whiteout); rename it before saving")


def _emit(tar: LayerTarWriter, reader: BlobReader, path: bytes, meta: Meta | None,
          blob: bytes | None, opaque: bool, job: _Job, size: int) -> int:
    if meta is None:
        tar.whiteout(path)
        return size
    if job is None:
        tar.add(path, meta)
    elif isinstance(job, str):  # "stream"
        assert blob is not None
        chunks = reader.stream(blob)
        if chunks is None:
            tar.add(path, meta, reader.fallback(blob))
        else:
            tar.add(path, meta, chunks=chunks)
    else:
        tar.add(path, meta, job.result())
    if opaque:
        tar.opaque(path)
    return size
