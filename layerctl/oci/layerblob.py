"""A layer's blob for an archive: its changeset tar, optionally compressed, hashed twice
(the DiffID of the tar, the digest of the blob) on a second thread while the first
one reads the store and builds the tar.

Compression is deterministic: gzip with mtime 0, no file name, level 6 (what
Docker uses); zstd at level 3, single-threaded, no content size.
"""

from __future__ import annotations

import hashlib
import queue
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from layerctl.errors import BadInput
from layerctl.oci.blobread import BlobReader
from layerctl.oci.changeset import write_changeset
from layerctl.oci.compression import GZIP, NONE, ZSTD
from layerctl.oci.layertar import LayerTarWriter
from layerctl.store.fstree import DirRef

if TYPE_CHECKING:
    from layerctl.store.types import TreeReader

COMPRESSIONS = (NONE, GZIP, ZSTD)
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
_BATCH = 1 << 20


@dataclass(frozen=True)
class BlobInfo:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the blob as written
    size: int  # bytes written
    compression: str


class _Gzip:
    """RFC 1952 by hand, so that every header byte is fixed."""

    def __init__(self, level: int) -> None:
        self.comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.crc = 0
        self.length = 0
        self.started = False

    def compress(self, data: bytes) -> bytes:
        self.crc = zlib.crc32(data, self.crc)
        self.length += len(data)
        out = self.comp.compress(data)
        if not self.started:
            self.started = True
            return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + out
        return out

    def flush(self) -> bytes:
        head = b"" if self.started else b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        self.started = True
        return head + self.comp.flush() + struct.pack("<II", self.crc, self.length & 0xFFFFFFFF)


def _compressor(compression: str) -> object | None:
    if compression == NONE:
        return None
    if compression == GZIP:
        return _Gzip(GZIP_LEVEL)
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
    """LayerTarWriter whose bytes go, in batches, to a _Pipeline instead of being hashed here."""

    def __init__(self, pipe: _Pipeline) -> None:
        super().__init__(None)
        self.pipe = pipe
        self.buf = bytearray()

    def _emit(self, data: bytes) -> None:
        self.size += len(data)
        if len(data) >= _BATCH // 4:
            self._flush()
            self.pipe.put(data)
            return
        self.buf += data
        if len(self.buf) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.pipe.put(bytes(self.buf))
            self.buf.clear()

    def close(self) -> str:
        self._emit(b"\0" * 1024)
        self._flush()
        self.result = self.pipe.finish()
        return self.result[0]


def write_layer_blob(
    store: TreeReader,
    parent: DirRef | None,
    layer: DirRef,
    out: BinaryIO,
    compression: str = NONE,
    reader: BlobReader | None = None,
) -> BlobInfo:
    """Write the blob of `layer`'s changeset against `parent` to `out`."""
    pipe = _Pipeline(out, compression)
    tar = _PipeTar(pipe)
    try:
        write_changeset(store, parent, layer, None, reader, tar=tar, strict=True)
    except BaseException:
        if pipe.thread.is_alive():
            pipe.queue.put(None)
            pipe.thread.join()
        raise
    diff_id, digest, size = tar.result
    return BlobInfo(diff_id, digest, size, compression)
