"""sha256 beside the thread that reads or writes the bytes, and a reader that hashes
and counts what is read through it: how a blob's digest or a tar's DiffID is checked
in the same pass that applies it (ingest, pull), or computed as a tar is made."""

from __future__ import annotations

import hashlib
from collections import deque
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

_CHUNK = 1 << 20
_BESIDE = 64 << 10  # pieces from this size on are hashed on a thread of their own
_MAX_QUEUED = 64 << 20  # bytes given but not hashed yet


class Sha256Beside:
    """sha256 of the pieces given, in order. Once a big piece comes, pieces are hashed
    on one helper thread (hashlib drops the GIL): the caller (a load's tar parsing, a
    DiffID pass) is a load's busiest thread. Pieces must not change once given."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None
        self._queued: deque[tuple[Future[None], int]] = deque()
        self._held = 0

    def update(self, data: bytes) -> None:
        if type(data) is not bytes:  # a view or bytearray its owner may reuse
            data = bytes(data)
        if self._pool is None:
            if len(data) < _BESIDE:
                self._sha.update(data)
                return
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sha256")
        while self._queued and (self._held > _MAX_QUEUED or self._queued[0][0].done()):
            done, size = self._queued.popleft()
            done.result()
            self._held -= size
        self._queued.append((self._pool.submit(self._sha.update, data), len(data)))
        self._held += len(data)

    def hexdigest(self) -> str:
        if self._pool is not None:
            for done, _size in self._queued:
                done.result()
            self._queued.clear()
            self._held = 0
            self._pool.shutdown()
            self._pool = None
        return self._sha.hexdigest()


class HashingReader:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = Sha256Beside()
        self.count = 0

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self.raw.read(n)
        self.count += len(data)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        """Read to the end, so that the digest covers everything."""
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()
