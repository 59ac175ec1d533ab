"""Deterministic gzip on all cores: the one gzip for layer blobs (`push`, `save`).

The input is cut into fixed 1 MiB blocks; each block is deflated on a worker
thread (zlib releases the GIL) with the previous block's last 32 KiB as its
dictionary and ends with a sync flush, and the blocks are written in order
into one deflate stream closed by an empty final block. One gzip member with
mtime 0 and no name: the same input always gives the same bytes, whatever
the number of cores, so a layer keeps its blob digest from push to push
(with a given deflate library: ISA-L via `isal` when installed, else zlib).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import BinaryIO

try:  # ISA-L's deflate is 5-10x faster than zlib's at the same ratio
    from isal import isal_zlib

    _deflater: ModuleType = isal_zlib  # zlib's interface, so either module does
    ISAL = True
except ImportError:  # pragma: no cover - isal is a dependency; zlib still works
    _deflater = zlib
    ISAL = False
LEVEL = 1

BLOCK = 1 << 20
WINDOW = 32 << 10


def _header(level: int) -> bytes:
    """magic, deflate, no flags, mtime 0, xfl (2 best, 4 fastest, else 0), OS unknown"""
    xfl = 4 if level <= 1 else 2 if level >= 9 else 0
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl]) + b"\xff"


def _deflate(block: bytes, dictionary: bytes, level: int) -> bytes:
    lib = _deflater if level <= 3 else zlib  # ISA-L has levels 0-3 only
    if dictionary:
        comp = lib.compressobj(level, zlib.DEFLATED, -15, 9, 0, dictionary)
    else:
        comp = lib.compressobj(level, zlib.DEFLATED, -15, 9)
    out: bytes = comp.compress(block) + comp.flush(lib.Z_SYNC_FLUSH)
    return out


class GzipWriter:
    """A binary sink: write() plain bytes, close() ends the stream. The gzip bytes go
    to `out`; `digest` and `size` describe them, `raw_size` the input. With out=None
    it is a compressor object instead: compress() and flush() return the gzip bytes."""

    def __init__(self, out: BinaryIO | None, level: int = LEVEL,
                 threads: int | None = None) -> None:
        self._held: list[bytes] = []
        self.out = out
        self.level = level
        self.pool = ThreadPoolExecutor(threads or max(2, os.cpu_count() or 2))
        self.pending: deque[Future[bytes]] = deque()
        self.max_pending = 2 * (threads or max(2, os.cpu_count() or 2))
        self.buffer = bytearray()
        self.previous = b""
        self.crc = 0
        self.raw_size = 0
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._emit(_header(level))

    def _emit(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        if self.out is None:
            self._held.append(data)
        else:
            self.out.write(data)

    def _take(self) -> bytes:
        data = b"".join(self._held)
        self._held.clear()
        return data

    def compress(self, data: bytes) -> bytes:
        """zlib-compressobj style (out=None): the gzip bytes ready so far."""
        self.write(data)
        return self._take()

    def flush(self) -> bytes:
        """zlib-compressobj style (out=None): end the stream; the rest of its bytes."""
        self.close()
        return self._take()

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= BLOCK:
            view = memoryview(self.buffer)
            cut = len(self.buffer) - len(self.buffer) % BLOCK
            for start in range(0, cut, BLOCK):
                self._submit(bytes(view[start : start + BLOCK]))
            view.release()
            del self.buffer[:cut]
        return len(data)

    def _submit(self, block: bytes) -> None:
        self.crc = _deflater.crc32(block, self.crc)  # ISA-L's: same value, 4x faster
        self.raw_size += len(block)
        self.pending.append(self.pool.submit(_deflate, block, self.previous, self.level))
        self.previous = block[-WINDOW:]
        while len(self.pending) > self.max_pending:
            self._emit(self.pending.popleft().result())

    def close(self) -> str:
        """Finish the stream; returns its digest (sha256:...)."""
        if self.buffer:
            self._submit(bytes(self.buffer))
            self.buffer.clear()
        while self.pending:
            self._emit(self.pending.popleft().result())
        self.pool.shutdown()
        self._emit(b"\x03\x00")  # an empty final fixed-Huffman block
        self._emit(
            self.crc.to_bytes(4, "little") + (self.raw_size & 0xFFFFFFFF).to_bytes(4, "little")
        )
        return self.digest

    def abort(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()
