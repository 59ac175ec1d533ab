"""A reader that hashes and counts what is read through it: how a blob's digest or a
tar's DiffID is checked in the same pass that applies it (ingest, pull)."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

_CHUNK = 1 << 20


class HashingReader:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self.raw.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        """Read to the end, so that the digest covers everything."""
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()
