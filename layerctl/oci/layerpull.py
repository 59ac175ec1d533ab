"""One pulled layer into the store, landed on its own.

`ingest.ingest` lands a whole batch of images at once (all or nothing, right
for an archive). A registry pull wants the opposite: each layer lands as soon
as its blob is verified, so that an interrupted pull keeps what it finished.
This module does that for one layer, with the same pieces and the same
results as ingest (tarapply onto the parent's tree, DiffID of layerctl's own
changeset tar, Source-DiffID trailer, history as author/message/time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from layerctl import heap
from layerctl.changeset.apply import apply_layer_tar
from layerctl.changeset.tarsplit import SOURCE_TAR, TarRecorder
from layerctl.compress.detect import open_decompressed
from layerctl.containers import mirror as layermirror
from layerctl.errors import BadInput
from layerctl.hashing import HashingReader
from layerctl.oci.chains import LayerIndex
from layerctl.oci.model import History
from layerctl.store.blobread import BlobReader
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef
from layerctl.store.layers import Layer, read_layer, write_layer
from layerctl.store.objects import PackWriter

if TYPE_CHECKING:
    from layerctl.store.repo import Store

PULL_REFS = "refs/pull/"  # refs/pull/<manifest digest hex>: a pull's landed layers
KEEP_FOR_DIFF_ID = 256 << 20  # file contents kept in memory for the DiffID pass
_DRAIN = 1 << 20


class PullIndex(LayerIndex):
    """LayerIndex that also sees the layers of unfinished pulls."""

    def _build(self) -> dict:
        keys = super()._build()
        for _ref, top in sorted(self.store.refs_under(PULL_REFS).items()):
            current = top
            while current and current not in self._layers:
                layer = read_layer(self.store, current)
                self._remember(keys, layer)
                current = layer.parent
        return keys


class KeepingWriter:
    """A PackWriter that also keeps the contents it is given, up to `budget` bytes, so
    that the DiffID pass after the apply reads them from memory, not back from the pack."""

    def __init__(self, writer: PackWriter, budget: int) -> None:
        self._writer = writer
        self.budget = budget
        self.kept: dict[bytes, bytes] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._writer, name)

    def add_blob_async(self, data: bytes, on_done: Callable[[bytes], None]) -> None:
        if len(data) > self.budget:
            self._writer.add_blob_async(data, on_done)
            return
        self.budget -= len(data)

        def keep(sha: bytes) -> None:
            self.kept[sha] = data
            on_done(sha)

        self._writer.add_blob_async(data, keep)


@dataclass
class LayerStream:
    """A layer's tar (decompressed) and, once it is read to the end, its sha256."""

    tar: BinaryIO
    digest: Callable[[], str]
    source: object = None  # what to close

    @classmethod
    def plain(cls, raw: BinaryIO, where: str) -> LayerStream:
        """From a blob in any compression layerctl reads (decompressed here)."""
        try:
            hashed = HashingReader(open_decompressed(raw))
        except BadInput as e:
            raise BadInput(f"{where}: {e}") from None
        return cls(hashed, lambda: hashed.digest, raw)

    def close(self) -> None:
        target = self.source if self.source is not None else self.tar
        close = getattr(target, "close", None)
        if close is not None:
            close()


@heap.bulk()
def land_layer(
    store: Store,
    parent: Layer | None,
    stream: LayerStream,
    diff_id: str,
    history: History,
    config: dict,
    where: str,
) -> Layer:
    """Apply the layer tar of `stream` on `parent`, check its DiffID, land it and write
    its commit; returns the new layer. The caller checks the blob's digest and size."""
    parent_root = parent.root if parent else None
    mirror = layermirror.start(store, parent_root)
    try:
        with store.pack_writer() as packer:
            writer = KeepingWriter(packer, KEEP_FOR_DIFF_ID)
            editor = TreeEditor(store, parent_root)
            recorder = TarRecorder(stream.tar)
            try:
                stats = apply_layer_tar(editor, writer, recorder, recorder=recorder,
                                        mirror=mirror)
                while recorder.read(_DRAIN):
                    pass
            except BadInput as e:
                raise BadInput(e if str(e).startswith(where) else f"{where}: {e}") from None
            if stream.digest() != diff_id:
                raise BadInput(
                    f"{where}: DiffID mismatch: the config says {diff_id}, "
                    f"the layer's tar is {stream.digest()}"
                )
            root = editor.write(packer)
            packer.finish()
        store.landed()
        with BlobReader.for_store(store, kept=writer.kept) as reader:
            ours, layer_dir = layermirror.diff_id_and_dir(store, parent_root, root, reader,
                                                         mirror)
    finally:
        if mirror is not None:
            mirror.stop()  # after an error; a dir it finished is layer_dir's
    writer.kept = {}
    try:
        layer = _write(store, parent, root, stats.bytes, ours, diff_id, history, config,
                       recorder)
        if layer_dir is not None:
            layer_dir.land(layer.id)
            layer_dir = None
    finally:
        if layer_dir is not None:
            layer_dir.discard()
    return layer


def _write(store: Store, parent: Layer | None, root: DirRef, size: int, ours: str,
           diff_id: str, history: History, config: dict, recorder: TarRecorder) -> Layer:
    trailers = {
        "DiffID": ours,
        "Size": str(size),
        "Created-By": history.created_by,
        "Source-DiffID": diff_id if diff_id != ours else "",
    }
    source = {SOURCE_TAR: recorder.finish(diff_id)} if diff_id != ours else None
    layer_id = write_layer(
        store, root, config, parent.id if parent else None, history.author, history.message,
        trailers, when=history.when, source=source,
    )  # fmt: skip
    return read_layer(store, layer_id)


def retag_config(store: Store, top: Layer, config: dict) -> Layer:
    """`top`, or a sibling commit of the same tree carrying `config` when its own
    config.json differs (a stored layer reused by an image with another config)."""
    if top.config == config:
        return top
    layer_id = write_layer(
        store, top.root, config, top.parent, top.author, top.message, top.trailers,
        when=top.author_time, source=top.source,
    )  # fmt: skip
    return read_layer(store, layer_id)
