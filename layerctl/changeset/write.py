"""A layer's changeset tar: the one writer (save, push, export, import, fetch and fsck
DiffIDs), with file contents read ahead on worker threads (blobread) while the tar is
written."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

from layerctl.changeset.tar import LayerTarWriter, changeset_changes, root_change
from layerctl.errors import BadInput
from layerctl.store.blobread import STREAM, BlobReader
from layerctl.store.diff import DELETED, Change
from layerctl.store.fstree import DirRef
from layerctl.store.meta import FILE, SYMLINK

if TYPE_CHECKING:
    from layerctl.store.blobread import Pending
    from layerctl.store.repo import Store
    from layerctl.store.staging import Staging

# what _emit gets for an entry: nothing to read, "stream" (a big blob, read in chunks
# as it is written) or a read already under way
_Job: TypeAlias = "None | str | Pending"

_WH = b".wh."
_WINDOW = 256  # changes read ahead
_MAX_AHEAD = 128 << 20  # bytes of content read ahead


def write_changeset(
    store: Store | Staging,
    parent: DirRef | None,
    layer: DirRef,
    out: BinaryIO | None = None,
    reader: BlobReader | None = None,
    tar: LayerTarWriter | None = None,
    strict: bool = False,
) -> tuple[str, int]:
    """Write the changeset tar of `layer` against `parent` to `out` (None: hash only),
    or into `tar`; returns (DiffID, tar size).

    With `strict`, a name starting with `.wh.` is refused: in a layer tar it would be
    read back as a whiteout, and the file lost."""
    own = reader is None
    reader = reader or BlobReader.for_store(store)
    try:
        tar = tar or LayerTarWriter(out)
        root = root_change(store, parent, layer)
        if root is not None:
            tar.add(b".", root)
        queue: deque[tuple[Change, _Job, int]] = deque()
        ahead = 0
        for change in changeset_changes(store, parent, layer):
            if strict and change.status != DELETED and _WH in change.path:
                _check_name(change.path)
            job: _Job = None
            size = 0
            meta = change.new
            if (change.status != DELETED and meta is not None and meta.link is None
                    and meta.kind in (FILE, SYMLINK)):
                assert change.new_blob is not None  # a file or symlink has content
                size = meta.size
                job = "stream" if size > STREAM else reader.submit(change.new_blob, size)
            queue.append((change, job, size))
            ahead += size
            while len(queue) > _WINDOW or ahead > _MAX_AHEAD:
                ahead -= _emit(tar, reader, *queue.popleft())
        while queue:
            _emit(tar, reader, *queue.popleft())
        return tar.close(), tar.size
    finally:
        if own:
            reader.close()


def _check_name(path: bytes) -> None:
    for part in path.split(b"/"):
        if part.startswith(_WH):
            shown = "/" + path.decode("utf-8", "backslashreplace")
            raise BadInput(f"{shown}: a layer tar cannot hold a file named '.wh.*' (it would "
                           "be read back as a whiteout); rename it before saving")


def _emit(tar: LayerTarWriter, reader: BlobReader, change: Change, job: _Job, size: int) -> int:
    if change.status == DELETED:
        tar.whiteout(change.path)
        return size
    assert change.new is not None  # an added or changed entry
    if job is None:
        tar.add(change.path, change.new)
    elif isinstance(job, str):  # "stream"
        assert change.new_blob is not None
        chunks = reader.stream(change.new_blob)
        if chunks is None:
            tar.add(change.path, change.new, reader.fallback(change.new_blob))
        else:
            tar.add(change.path, change.new, chunks=chunks)
    else:
        tar.add(change.path, change.new, job.result())
    if change.opaque:
        tar.opaque(change.path)
    return size
