"""Layer blobs for an archive: each layer's changeset tar, optionally compressed, hashed
twice (the DiffID of the tar, the digest of the blob) on a second thread while the
first one reads the store and builds the tar; `Blobs` writes each layer once per
archive, for the docker-archive and OCI layout writers.

Compression is deterministic: compress.gzip (the same bytes `push` sends); zstd at
level 3, single-threaded, no content size.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, cast

from layerctl import faults
from layerctl.changeset.tar import LayerTarWriter
from layerctl.changeset.tarsplit import BrokenRecord, emit_checked, layer_record
from layerctl.changeset.write import write_changeset
from layerctl.compress.detect import GZIP, NONE, ZSTD
from layerctl.compress.gzip import GzipWriter
from layerctl.errors import BadInput
from layerctl.images import ImageName
from layerctl.oci.archive.out import DirOut, Pending, TarOut
from layerctl.oci.origin import image_config
from layerctl.store.blobread import BlobReader
from layerctl.store.fstree import DirRef
from layerctl.store.layers import Layer

if TYPE_CHECKING:
    from layerctl.store.types import StoreLike

COMPRESSIONS = (NONE, GZIP, ZSTD)
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class BlobInfo:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the blob as written
    size: int  # bytes written
    compression: str


def _compressor(compression: str) -> object | None:
    if compression == NONE:
        return None
    if compression == GZIP:  # the same bytes as `push` sends for the layer
        return GzipWriter(None)
    if compression == ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0).compressobj()
    raise BadInput(f"unknown compression {compression!r}: use gzip, zstd or none")


class _Pipeline:
    """Hashes, compresses and writes on a thread of its own."""

    def __init__(self, out: BinaryIO, compression: str) -> None:
        self.out = out
        self.comp = _compressor(compression)
        self.tar_sha = hashlib.sha256()
        self.blob_sha = hashlib.sha256() if self.comp is not None else self.tar_sha
        self.size = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.thread = threading.Thread(target=self._run, name="layer-blob", daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        if data:
            if self.comp is not None:
                self.blob_sha.update(data)
            self.out.write(data)
            self.size += len(data)

    def _run(self) -> None:
        try:
            while (data := self.queue.get()) is not None:
                self.tar_sha.update(data)
                self._write(self.comp.compress(data) if self.comp is not None else data)
            if self.comp is not None:
                self._write(self.comp.flush())
        except BaseException as e:  # reported by finish(), on the caller's thread
            self.error = e
            while self.queue.get() is not None:
                pass

    def put(self, data: bytes) -> None:
        if self.error is None:
            self.queue.put(data)

    def finish(self) -> tuple[str, str, int]:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        tar, blob = self.tar_sha.hexdigest(), self.blob_sha.hexdigest()
        return "sha256:" + tar, "sha256:" + blob, self.size


class _PipeTar(LayerTarWriter):
    """LayerTarWriter whose bytes go (in its blocks of ~1 MiB, big contents whole) to a
    _Pipeline instead of being hashed here."""

    def __init__(self, pipe: _Pipeline) -> None:
        super().__init__(None)
        self.pipe = pipe

    def _sink(self, data: bytes) -> None:
        self.pipe.put(data)

    def close(self, end: bool = True) -> str:
        super().close(end)
        self.result = self.pipe.finish()
        return self.result[0]


def write_layer_blob(
    store: object,
    parent: DirRef | None,
    layer: DirRef,
    out: BinaryIO,
    compression: str = NONE,
    reader: BlobReader | None = None,
    record: tuple[bytes, str] | None = None,
    layer_dir: bytes | None = None,
) -> BlobInfo:
    """Write the blob of `layer`'s changeset against `parent` to `out`; with `record`
    (a tar-split record and the DiffID it must give), the layer's original tar instead
    (tarsplit.BrokenRecord if it does not give that DiffID: discard what was written).
    `layer_dir`: the layer's overlay dir, whose files may stand in for stored blobs
    (write_changeset checks each one's blob id)."""
    pipe = _Pipeline(out, compression)
    tar = _PipeTar(pipe)
    try:
        if record is not None:
            with BlobReader.for_store(store) if reader is None else nullcontext(reader) as r:
                emit_checked(record[0], record[1], r, tar)
        else:
            write_changeset(store, parent, layer, None, reader, tar=tar, strict=True,
                            layer_dir=layer_dir)
    except BaseException:
        if pipe.thread.is_alive():
            pipe.queue.put(None)
            pipe.thread.join()
        raise
    diff_id, digest, size = tar.result
    return BlobInfo(diff_id, digest, size, compression)


@dataclass
class SaveImage:
    """An image to save: its tags (maybe none) and its layers, base first."""

    tags: list[ImageName]
    layers: list[Layer]

    @property
    def top(self) -> Layer:
        return self.layers[-1]


@dataclass
class Blobs:
    """Writes each layer's blob once per archive; remembers what it wrote."""

    store: object
    compression: str
    reader: BlobReader
    progress: Callable[[Layer, BlobInfo], None] | None = None
    written: dict[str, tuple[BlobInfo, str]] = field(default_factory=dict)  # id -> (info, name)
    stale: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # layer id -> why its record failed
    # layer id -> files of its layer dir that were not their blobs (the stored ones saved)
    altered: dict[str, int] = field(default_factory=dict)

    def _try(self, layer: Layer, parent: Layer | None, out: TarOut | DirOut,
             record: tuple[bytes, str] | None) -> tuple[BlobInfo, Pending] | None:
        """The layer's blob, pending in `out`: its original tar from `record`, else
        layerctl's changeset. A record that does not give back the layer's tar is
        noted in `broken` (None returned, nothing written)."""
        pending: Pending = out.pending()
        try:
            info = write_layer_blob(
                self.store, parent.root if parent else None, layer.root, pending,
                self.compression, self.reader, record,
                None if record is not None else self._layer_dir(layer, parent),
            )
        except BrokenRecord as e:
            pending.abort()
            self.broken[layer.id] = str(e)
            return None
        except BaseException:
            pending.abort()
            raise
        return info, pending

    def _layer_dir(self, layer: Layer, parent: Layer | None) -> bytes | None:
        """The layer's overlay dir (made at load, pull or a container's first need), if
        it is there and holds this changeset: its files are read instead of inflating
        their pack objects, as podman's save reads its layers' files."""
        from layerctl.containers.layerdirs import diff_path, exists

        if layer.parent != (parent.id if parent is not None else None):
            return None
        store = cast("StoreLike", self.store)
        if not exists(store, layer.id):  # one that exists is complete (renamed whole)
            return None
        faults.point("save.layer-dir")  # found; its files not read yet (prune may take it)
        return os.fsencode(diff_path(store, layer.id))

    def config(self, image: SaveImage) -> bytes:
        """The image's config as written: its own bytes if loaded or pulled and still
        true, else layerctl's, with the DiffIDs of the tars written."""
        diff_ids = [self.written[layer.id][0].diff_id for layer in image.layers]
        return image_config(self.store, image.layers, diff_ids)

    def write(self, layer: Layer, parent: Layer | None, out: TarOut | DirOut,
              name_of: Callable[[BlobInfo], str]) -> tuple[BlobInfo, str]:
        found = self.written.get(layer.id)
        if found is not None:
            return found
        record = layer_record(self.store, layer)
        info = None
        if record is not None:
            info = self._try(layer, parent, out, record)
        if info is None:
            before = self.reader.mismatched
            info = self._try(layer, parent, out, None)
            if self.reader.mismatched != before:
                self.altered[layer.id] = self.reader.mismatched - before
        pending = info[1]
        info = info[0]
        name = name_of(info)
        pending.finish(name)
        expected = record[1] if record is not None and layer.id not in self.broken else (
            layer.diff_id)
        if expected and expected != info.diff_id:
            self.stale.append(layer.id)
        self.written[layer.id] = (info, name)
        if self.progress is not None:
            self.progress(layer, info)
        return info, name
