"""`layerctl import`: a root filesystem (directory or tar) becomes one base layer."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from layerctl import faults, heap
from layerctl.changeset.apply import DEFAULT_LIMITS, Limits, apply_rootfs_tar
from layerctl.changeset.snapshot import DirImporter, Progress
from layerctl.changeset.tar import LayerTarWriter
from layerctl.changeset.write import write_changeset
from layerctl.compress.detect import open_decompressed
from layerctl.errors import BadInput
from layerctl.images import ImageName, default_config, image_layer, parse_name, tag_new_layer
from layerctl.store.blobread import BlobReader
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef
from layerctl.store.layers import write_layer

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def commit_root(
    store: Store,
    root: DirRef,
    parent: DirRef | None,
    parent_id: str | None,
    config: dict,
    author: str,
    message: str,
    created_by: str,
    size: int,
    diff_id: str | None = None,
) -> str:
    """Write the commit for a filesystem whose trees are already stored; returns its id.

    `diff_id`, when the caller already hashed the changeset tar, saves a pass.
    """
    diff_id = diff_id or write_changeset(store, parent, root)[0]
    trailers = {"DiffID": diff_id, "Size": str(size), "Created-By": created_by}
    return write_layer(store, root, config, parent_id, author, message, trailers)


@heap.bulk()
def import_directory(
    store: Store,
    source: str,
    name: ImageName,
    author: str,
    message: str = "",
    progress: Progress | None = None,
) -> str:
    """Import the directory `source` as a new base layer tagged `name`; returns its id."""
    if not os.path.isdir(source):
        raise BadInput(f"{source}: not a directory")
    before = image_layer(store, name)
    with store.pack_writer() as writer:
        tar = LayerTarWriter()
        importer = DirImporter(writer, progress, tar=tar)
        root = importer.import_dir(source)
        writer.finish()
    store.landed()
    faults.point("import.write-layer")
    layer_id = commit_root(
        store,
        root,
        None,
        None,
        default_config(),
        author,
        message,
        f"layerctl import {os.path.basename(os.path.abspath(source))}",
        importer.total,
        diff_id=tar.close(),
    )
    faults.point("import.move-tag")
    tag_new_layer(store, name, layer_id, "imported", expected=before)
    return layer_id


KEEP_FOR_DIFF_ID = 128 << 20  # import_tar: file contents kept in memory for the DiffID pass


class _Progress:
    """Reports the compressed bytes read from the source: (done, size of the file).

    With an unknown size (a pipe) it reports once, at the end.
    """

    def __init__(self, raw: BinaryIO, total: int, progress: Callable[[int, int], None]) -> None:
        self.raw = raw
        self.total = total
        self.done = 0
        self.progress = progress
        self._next = 1 << 20
        self._finished = False

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.done += len(data)
        if self._finished:
            return data
        if not data or (self.total and self.done >= self.total):
            self._finished = True
            self.progress(self.done, max(self.total, self.done))
        elif self.total and self.done >= self._next:
            self._next = self.done + (1 << 20)
            self.progress(self.done, self.total)
        return data


@heap.bulk()
def import_tar(
    store: object,
    source: str | os.PathLike,
    name: ImageName | str,
    author: str,
    message: str = "",
    progress: Callable[[int, int], None] | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Import the root filesystem tar `source` (`-`: stdin; plain, gzip, zstd, xz, bzip2)
    as a new base layer tagged `name`; returns the layer id.

    `progress(done, total)` gets compressed bytes read and the file's size.
    The store is unchanged if the tar is refused.
    """
    if isinstance(name, str):
        name = parse_name(name)
    source = os.fspath(source)
    if source == "-":
        raw, label, total, close = sys.stdin.buffer, "-", 0, False
    else:
        if os.path.isdir(source):
            raise BadInput(f"{source}: is a directory, not a tar archive")
        try:
            raw = open(source, "rb")
        except OSError as e:
            raise BadInput(f"cannot open {source}: {e.strerror}") from None
        label, close = os.path.basename(source), True
        total = os.fstat(raw.fileno()).st_size
    try:
        reader = _Progress(raw, total, progress) if progress else raw
        before = image_layer(store, name)
        with store.pack_writer() as writer:
            editor = TreeEditor(store, None)
            stats, kept = apply_rootfs_tar(editor, writer, open_decompressed(reader), limits,
                                           KEEP_FOR_DIFF_ID)
            root = editor.write(writer)
            writer.finish()
    finally:
        if close:
            raw.close()
    store.landed()
    faults.point("import.write-layer")
    # The DiffID is the hash of the tar layerctl writes (walk order), not of the
    # input; contents still in memory spare reading them back from the pack.
    with BlobReader.for_store(store, kept=kept) as reader:
        diff_id, _size = write_changeset(store, None, root, None, reader)
    kept.clear()
    layer_id = commit_root(
        store, root, None, None, default_config(), author, message,
        f"layerctl import {label}", stats.bytes, diff_id=diff_id,
    )
    faults.point("import.move-tag")
    tag_new_layer(store, name, layer_id, "imported", expected=before)
    return layer_id
