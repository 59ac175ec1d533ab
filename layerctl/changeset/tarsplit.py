"""Byte-exact layer tars (tar-split style): what a loaded or pulled layer's tar held
besides file contents, kept so that `save` and `push` can give back that very tar.

While tarapply reads a layer tar, a `TarRecorder` between the decompressed stream
and the tar reader keeps every byte that is not the content of a regular file:
headers (ustar, PAX, GNU long names, whatever the writer put), padding, the
end-of-archive blocks and any trailing bytes, in stream order. Each regular
file's content is replaced by its size and the id of the store blob it became.
The record, zlib-compressed, is the layer commit's `source/tar-split` blob:

    b"LCTS1\\n"
    repeated: varint(len(raw)) raw varint(next)   next = 0: end, else content size + 1
    then per content, in order: one byte len(id), the blob id
    then the 32-byte sha256 of the whole tar (its DiffID)

`emit` rebuilds the tar from the record and the store's blobs into a
LayerTarWriter, so the DiffID is hashed as the bytes go out; the caller
compares it with the layer's Source-DiffID and, on any mismatch (a tampered
record, a missing blob), throws the bytes away and writes layerctl's own
changeset instead (docs/design-notes.md, "Byte-exact layer tars").
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import TYPE_CHECKING, BinaryIO, TypeAlias, cast

from isal import isal_zlib  # a dependency (store.objects packs with it)

from layerctl.changeset.tar import LayerTarWriter
from layerctl.errors import LayerctlError
from layerctl.store.blobread import STREAM, BlobReader
from layerctl.store.layers import Layer, read_source
from layerctl.store.packs import read_varint

if TYPE_CHECKING:
    from layerctl.store.blobread import Pending
    from layerctl.store.types import TreeReader

# a content to emit: "stream" (a big blob, read in chunks) or a read under way
_Job: TypeAlias = "None | str | Pending"

MAGIC = b"LCTS1\n"
SOURCE_TAR = b"tar-split"  # the record's name in the layer commit's source/ tree
_WINDOW = 256  # contents read ahead
_MAX_AHEAD = 128 << 20
_MAX_RECORD = 1 << 30  # a record that inflates beyond this is refused, not read
_BATCH = 1 << 20


class BrokenRecord(LayerctlError):
    """A tar-split record that does not give back its tar (tampered, truncated, or a
    content blob the store lacks)."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class TarRecorder:
    """A reader in front of a decompressed layer tar that keeps all but file contents.

    The tar reader calls `content(offset, size)` for each regular file whose bytes
    [offset, offset + size) of the stream go to the store, and `resolve(index, id)`
    once that content's blob id is known. `finish()` gives the compressed record."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.pos = 0  # bytes read from `raw`
        self.base = 0  # stream offset of pending[0]
        self.skip_until = 0  # bytes before this offset are content, not kept
        self.pending = bytearray()
        # ISA-L at level 2: 20x faster than zlib's level 6 on headers and padding, for a
        # record ~20% larger (Debian: 0.27% of the tar instead of 0.22%)
        self.comp = isal_zlib.compressobj(2)
        self.out = bytearray(MAGIC)  # record bytes not yet compressed (in 1 MiB batches)
        self.parts: list[bytes] = []
        self.ids: list[bytes | None] = []

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n) if n is not None and n >= 0 else self.raw.read()
        if data:
            start = self.pos
            self.pos += len(data)
            drop = min(len(data), max(0, self.skip_until - start))
            if drop < len(data):
                if not self.pending:
                    self.base = start + drop
                self.pending += data[drop:] if drop else data
        return data

    def content(self, offset: int, size: int) -> int:
        """Bytes [offset, offset + size) are a file's content; returns its index, or -1
        when they are not where a content can start (then they stay in the record)."""
        cut = offset - self.base
        if cut < 0 or cut > len(self.pending):
            return -1
        self._put(bytes(self.pending[:cut]), size + 1)
        del self.pending[:cut + size]  # O(1) at a bytearray's front: no copy of the rest
        self.base = offset + size
        self.skip_until = offset + size
        self.ids.append(None)
        return len(self.ids) - 1

    def resolve(self, index: int, blob_id: bytes) -> None:
        self.ids[index] = blob_id

    def _put(self, raw: bytes, nxt: int) -> None:
        self.out += _varint(len(raw))
        self.out += raw
        self.out += _varint(nxt)
        if len(self.out) >= _BATCH:
            self.parts.append(self.comp.compress(bytes(self.out)))
            self.out.clear()

    def finish(self, diff_id: str) -> bytes | None:
        """The compressed record of the tar read (to the end), whose sha256 is `diff_id`
        (hashed by the caller, who checks it anyway); None if the reader did not read it
        all or a content never got its blob (then the layer keeps no record)."""
        if self.skip_until > self.pos or None in self.ids:
            return None
        self._put(bytes(self.pending), 0)
        self.pending = bytearray()
        digest = bytes.fromhex(diff_id.removeprefix("sha256:"))
        ids = cast("list[bytes]", self.ids)  # no None left: checked above
        self.out += b"".join(bytes((len(i),)) + i for i in ids)
        self.out += digest
        self.parts.append(self.comp.compress(bytes(self.out)))
        self.out.clear()
        self.parts.append(self.comp.flush())
        return b"".join(self.parts)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return read_varint(data, pos)
    except ValueError:
        raise BrokenRecord("truncated") from None


def parse(record: bytes) -> tuple[list[tuple[bytes, int]], list[bytes], str]:
    """(segments, content ids, DiffID): segments are (raw bytes, content size or -1)."""
    try:
        dec = zlib.decompressobj()
        data = dec.decompress(record, _MAX_RECORD)
        if dec.unconsumed_tail or not dec.eof or dec.unused_data:
            raise BrokenRecord("not one complete zlib stream (or too large)")
    except zlib.error as e:
        raise BrokenRecord(f"not zlib data ({e})") from None
    if not data.startswith(MAGIC):
        raise BrokenRecord("unknown format")
    pos = len(MAGIC)
    segments: list[tuple[bytes, int]] = []
    while True:
        length, pos = _read_varint(data, pos)
        raw = data[pos:pos + length]
        if len(raw) != length:
            raise BrokenRecord("truncated")
        pos += length
        nxt, pos = _read_varint(data, pos)
        segments.append((raw, nxt - 1))
        if nxt == 0:
            break
    ids = []
    for _ in range(sum(1 for _raw, size in segments if size >= 0)):
        if pos >= len(data):
            raise BrokenRecord("truncated")
        n = data[pos]
        ids.append(data[pos + 1:pos + 1 + n])
        pos += 1 + n
    if len(data) - pos != 32:
        raise BrokenRecord("truncated or trailing data")
    return segments, ids, "sha256:" + data[pos:].hex()


def emit(record: bytes, reader: BlobReader, tar: LayerTarWriter, expected: str = "") -> str:
    """Write the tar `record` describes into `tar` (contents through `reader`) and
    close it; returns the DiffID of what was written. Raises BrokenRecord when that is
    not the DiffID the record was made from or a content blob is missing or of
    another size (what was written to `tar` must then be thrown away)."""
    segments, ids, recorded = parse(record)
    if expected and recorded != expected:
        raise BrokenRecord(f"it names the tar {recorded[:19]}, the layer's is {expected[:19]}")
    queue: deque[tuple[bytes, int, bytes, _Job]] = deque()
    ahead = 0
    index = 0
    for raw, size in segments:
        job: _Job = None
        blob_id = b""
        if size >= 0:
            blob_id = ids[index]
            index += 1
            job = "stream" if size > STREAM else _submit(reader, blob_id, size)
        queue.append((raw, size, blob_id, job))
        ahead += max(size, 0)
        while len(queue) > _WINDOW or ahead > _MAX_AHEAD:
            ahead -= max(_emit_one(tar, reader, *queue.popleft()), 0)
    while queue:
        _emit_one(tar, reader, *queue.popleft())
    got = tar.close(end=False)
    if got != recorded:
        raise BrokenRecord(f"it gives a tar of {got[:19]}, not the {recorded[:19]} it records")
    return got


def _submit(reader: BlobReader, blob_id: bytes, size: int) -> Pending:
    try:
        return reader.submit(blob_id, size)
    except (KeyError, LayerctlError, OSError, ValueError):
        raise BrokenRecord(f"content blob {blob_id.hex()[:12]} is not in the store") from None


def _emit_one(tar: LayerTarWriter, reader: BlobReader, raw: bytes, size: int, blob_id: bytes,
              job: _Job) -> int:
    if raw:
        tar.raw(raw)
    if size < 0:
        return size
    if isinstance(job, str):  # "stream"
        chunks = reader.stream(blob_id)
        if chunks is None:
            job = _submit(reader, blob_id, size)
        else:
            done = 0
            for chunk in chunks:
                done += len(chunk)
                tar.raw(chunk)
            if done != size:
                raise BrokenRecord(f"content blob {blob_id.hex()[:12]} has {done} bytes, "
                                   f"not {size}")
            return size
    assert job is not None  # every content (size >= 0) got one
    try:
        data = job.result()
    except (KeyError, LayerctlError, OSError, ValueError):
        raise BrokenRecord(f"content blob {blob_id.hex()[:12]} is not in the store") from None
    if len(data) != size:
        raise BrokenRecord(f"content blob {blob_id.hex()[:12]} has {len(data)} bytes, not {size}")
    tar.raw(data)
    return size


def record_diff_id(record: bytes) -> str:
    """The DiffID a record was made from (BrokenRecord if it cannot be read)."""
    return parse(record)[2]


def emit_checked(record: bytes, expected: str, reader: BlobReader, tar: LayerTarWriter) -> str:
    """emit(), and the tar must be the one the layer came with: its DiffID `expected`
    (the layer's Source-DiffID), not only the one the record itself names."""
    return emit(record, reader, tar, expected)


def layer_record(store: TreeReader, layer: Layer) -> tuple[bytes, str] | None:
    """(tar-split record, the DiffID it must give) of a loaded or pulled layer whose
    original tar differs from layerctl's changeset; None for any other layer."""
    if layer.source is None or not layer.source_diff_id:
        return None
    record = read_source(store, layer, SOURCE_TAR)
    return (record, layer.source_diff_id) if record is not None else None
