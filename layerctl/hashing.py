"""A reader that hashes and counts what is read through it: how a blob's digest or a
tar's DiffID is checked in the same pass that applies it (ingest, pull)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

_CHUNK = 1 << 20
_BESIDE = 64 << 10  # chunks from this size on are hashed on a thread of their own


class HashingReader:
    """The sha256 of big reads is computed on one helper thread, in read order: the
    reading thread is a load's busiest (tar parsing), and hashlib drops the GIL."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0
        self._pool: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self.raw.read(n)
        self.count += len(data)
        if self._pool is None and len(data) >= _BESIDE:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sha256")
        if self._pool is not None:  # once used, every chunk goes there (order)
            self._last = self._pool.submit(self.sha.update, data)
        else:
            self.sha.update(data)
        return data

    def drain(self) -> None:
        """Read to the end, so that the digest covers everything."""
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        if self._pool is not None:
            if self._last is not None:
                self._last.result()
            self._pool.shutdown()
            self._pool = None
        return "sha256:" + self.sha.hexdigest()
