"""Gzip layer blobs decompressed chunk by chunk (ISA-L when installed), the tar hashed
on the way: run it inside a Prefetch thread and the pull's main thread only parses
the tar. Output per step is bounded (a bomb costs time, not memory); members may
be concatenated; anything else after the data, or data that ends early, is an error.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType

from layerctl.errors import BadInput

try:
    from isal import isal_zlib

    _inflater: ModuleType = isal_zlib  # zlib's interface, so either module does
except ImportError:  # pragma: no cover - isal is a dependency; zlib still works
    _inflater = zlib

STEP = 1 << 20  # most output bytes per decompress call
_GZIP_WBITS = 16 + 15
_MAGIC = b"\x1f\x8b"


class GunzipChunks:
    """Iterate to get the tar's chunks; then `digest` is its sha256 and `size` its length."""

    def __init__(
        self, chunks: Iterable[bytes], where: str, on_read: Callable[[int], None] | None = None
    ) -> None:
        self.chunks = chunks
        self.where = where
        self.on_read = on_read
        self.sha = hashlib.sha256()
        self.size = 0
        self.read = 0

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()

    def _fail(self, problem: str) -> BadInput:
        return BadInput(f"{self.where}: corrupt gzip data: {problem}")

    def __iter__(self) -> Iterator[bytes]:
        dec = _inflater.decompressobj(_GZIP_WBITS)
        started = False  # a member has begun and not ended
        errors = (_inflater.error, zlib.error)
        for chunk in self.chunks:
            self.read += len(chunk)
            if self.on_read is not None:
                self.on_read(self.read)
            data = chunk
            while data:
                if not started:
                    if not data.startswith(_MAGIC[: len(data)]):
                        raise self._fail("not gzip (or garbage after the last member)")
                    started = True
                try:
                    out = dec.decompress(data, STEP)
                except errors as e:
                    raise self._fail(str(e)) from None
                if out:
                    self.sha.update(out)
                    self.size += len(out)
                    yield out
                if dec.eof:
                    data = dec.unused_data
                    dec = _inflater.decompressobj(_GZIP_WBITS)
                    started = False
                else:
                    data = dec.unconsumed_tail
        if started:
            raise self._fail("the blob ends before the end of the gzip stream")
        if self.read == 0:
            raise self._fail("the blob is empty")
