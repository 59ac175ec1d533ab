"""Decompressing layer streams: gzip, zstd, xz and bzip2, detected by magic bytes.

Every decoder streams with a bounded amount of output per step (a
decompression bomb costs time, never memory; the caller counts bytes), and
every problem with the compressed data (corruption, a bad checksum, a stream
that ends early, garbage after the end) is a CorruptStream, a BadInput whose
message names the format and the problem, never a zlib or zstd traceback.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from typing_extensions import Buffer

from layerctl.errors import BadInput

GZIP, ZSTD, XZ, BZIP2, NONE = "gzip", "zstd", "xz", "bzip2", "none"
_MAGIC = (
    (b"\x1f\x8b", GZIP),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"\xfd7zXZ\x00", XZ),
    (b"BZh", BZIP2),
)
_CHUNK = 1 << 16
# zstd's decompressobj has no output limit, and one 4-byte RLE block expands to
# 128 KiB; feeding it 2 KiB at a time bounds one step's output to 64 MiB.
_ZSTD_FEED = 2048


class CorruptStream(BadInput):
    """Compressed input that cannot be decompressed to its end."""


def detect_compression(head: bytes) -> str:
    """'gzip', 'zstd', 'xz', 'bzip2' or 'none' from the first bytes of a stream."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return NONE


def _read_head(fileobj: BinaryIO, n: int) -> bytes:
    """Up to n bytes, reading again after short reads (pipes)."""
    parts = []
    got = 0
    while got < n:
        data = fileobj.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Source:
    """The underlying stream with the sniffed bytes put back in front."""

    def __init__(self, head: bytes, fileobj: BinaryIO) -> None:
        self._head = head
        self._file = fileobj
        self.eof = False

    def read(self, n: int) -> bytes:
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        if self.eof:
            return b""
        try:
            data = self._file.read(n)
        except OSError as e:
            raise BadInput(f"cannot read the input: {e.strerror or e}") from None
        if not data:
            self.eof = True
        return data


class DecompressedStream(io.RawIOBase):
    """A readable binary stream of the decompressed data; `.compression` names the format."""

    def __init__(self, source: _Source, compression: str) -> None:
        super().__init__()
        self.compression = compression
        self._src = source
        self._buf = b""
        self._done = False
        self._in = b""  # compressed input not yet given to the decoder
        # decoder of the current member / frame: zlib, zstd, lzma or bz2, no common type
        self._dec: Any = None
        self._members = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:
        with memoryview(b) as view:
            data = self.read(len(view))
            view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        while not self._buf and not self._done:
            self._buf = self._step(max(size, _CHUNK))
            if not self._buf and self._dec is None and self._src.eof and not self._in:
                self._done = True
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readall(self) -> bytes:
        parts = []
        while data := self.read(_CHUNK):
            parts.append(data)
        return b"".join(parts)

    # -- decoding -----------------------------------------------------------

    def _fill(self, n: int = _CHUNK) -> bool:
        """Make sure some compressed input is pending; False at the end of the input."""
        if not self._in:
            self._in = self._src.read(n)
        return bool(self._in)

    def _fail(self, problem: str) -> CorruptStream:
        return CorruptStream(f"corrupt {self.compression} data: {problem}")

    def _truncated(self) -> CorruptStream:
        return CorruptStream(
            f"truncated {self.compression} data: the input ends before the end of the "
            "compressed stream"
        )

    def _step(self, limit: int) -> bytes:
        """Some decompressed bytes (at most about `limit`), or b"" at the very end."""
        if self.compression == NONE:
            return self._src.read(limit)
        if self._dec is None and not self._start_member():
            return b""
        try:
            if self.compression == GZIP:
                return self._step_zlib(limit)
            if self.compression == ZSTD:
                return self._step_zstd()
            return self._step_lzma_bz2(limit)
        except (zlib.error, lzma.LZMAError, OSError, EOFError) as e:
            raise self._fail(str(e)) from None
        except Exception as e:  # zstandard.ZstdError
            if type(e).__name__ == "ZstdError":
                raise self._fail(str(e)) from None
            raise

    def _start_member(self) -> bool:
        """Begin the next member / frame; False at a clean end of the input."""
        while True:
            if not self._fill():
                if self._members == 0:
                    raise CorruptStream(f"empty {self.compression} stream")
                return False
            if self._members and self.compression == GZIP and not self._in.strip(b"\0"):
                self._in = b""  # gzip allows zero padding after the last member
                continue
            break
        if self.compression == GZIP:
            self._dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.compression == ZSTD:
            import zstandard

            self._dec = zstandard.ZstdDecompressor().decompressobj()
        elif self.compression == XZ:
            self._dec = lzma.LZMADecompressor(lzma.FORMAT_AUTO)
        else:
            self._dec = bz2.BZ2Decompressor()
        self._members += 1
        return True

    def _end_member(self, unused: bytes) -> None:
        self._in = unused + self._in
        self._dec = None

    def _step_zlib(self, limit: int) -> bytes:
        dec = self._dec
        while True:
            out: bytes = dec.decompress(self._in, limit)
            self._in = dec.unconsumed_tail
            if dec.eof:
                self._end_member(dec.unused_data)
                return out
            if out:
                return out
            if not self._in and not self._fill():
                raise self._truncated()

    def _step_zstd(self) -> bytes:
        dec = self._dec
        while True:
            if not self._fill():
                raise self._truncated()
            feed, self._in = self._in[:_ZSTD_FEED], self._in[_ZSTD_FEED:]
            out: bytes = dec.decompress(feed)
            if dec.eof:
                self._end_member(dec.unused_data)
                return out
            if out:
                return out

    def _step_lzma_bz2(self, limit: int) -> bytes:
        dec = self._dec
        while True:
            if dec.needs_input:
                if not self._fill():
                    raise self._truncated()
                data, self._in = self._in, b""
            else:
                data = b""
            out: bytes = dec.decompress(data, limit)
            if dec.eof:
                self._end_member(dec.unused_data)
                return out
            if out:
                return out


def open_decompressed(fileobj: BinaryIO) -> DecompressedStream:
    """A binary stream of `fileobj`'s content, decompressed if it is gzip, zstd, xz or bzip2.

    Works on pipes (nothing is seeked). Errors in the compressed data raise
    CorruptStream (a BadInput) when the bad part is read.
    """
    head = _read_head(fileobj, 6)
    kind = detect_compression(head)
    return DecompressedStream(_Source(head, fileobj), kind)
