"""Reading a blob in pieces: `show LAYER:PATH` and previews of multi-GiB files must
not hold the whole object in memory (dulwich's get_raw inflates it in one piece).

A whole (non-delta) object in a pack, or a loose object, is inflated chunk by
chunk from its file. A delta object is rebuilt in memory (store.read_blob); git only
deltifies objects below core.bigFileThreshold (512 MiB) and layerctl's own packs
never hold deltas, so that fallback stays bounded in practice.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from layerctl.errors import Corrupt
from layerctl.store.repo import is_damage

if TYPE_CHECKING:
    from layerctl.store.repo import Store

CHUNK = 1 << 20
_BLOB = 3
_READ = 64 * 1024


def iter_blob(store: Store, binsha: bytes, chunk: int = CHUNK) -> Iterator[bytes]:
    """The blob's content as pieces of at most `chunk` bytes."""
    try:
        yield from _pieces(store, binsha, chunk)
        return
    except Exception as e:  # noqa: BLE001 - is_damage decides
        if not is_damage(e):
            raise
    raise _damaged(binsha)  # outside the handler: no frame keeps a view of the pack


def _pieces(store: Store, binsha: bytes, chunk: int) -> Iterator[bytes]:
    found = store.packed_at(binsha)
    if found is not None:
        yield from _packed(store, found[0].base + ".pack", found[1], binsha, chunk)
        return
    path = store.path("objects", binsha.hex()[:2], binsha.hex()[2:])
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        yield store.read_blob(binsha)  # raises Corrupt, or finds a pack written since
        return
    with f:
        yield from _loose(f, binsha, chunk)


def read_head(store: Store, binsha: bytes, limit: int) -> bytes:
    """At most the first `limit` bytes of the blob. One that is packed whole and no
    bigger than `limit` is inflated in one piece from the store's map of the pack (most
    are: a package list, a database, a preview's text): no file opened, no stream."""
    try:
        found = store.packed_at(binsha)
        whole = found[0].whole_at(found[1], limit) if found is not None else None
    except Exception as e:  # noqa: BLE001 - is_damage decides
        if not is_damage(e):
            raise
        whole = None  # read in pieces below, which says it is damaged
    if whole is not None:
        return whole
    out = bytearray()
    for piece in iter_blob(store, binsha, min(limit, CHUNK) or 1):
        out += piece[: limit - len(out)]
        if len(out) >= limit:
            break
    return bytes(out)


def _packed(store: Store, filename: str, offset: int, binsha: bytes,
            chunk: int) -> Iterator[bytes]:
    with open(filename, "rb") as f:
        f.seek(offset)
        head = f.read(16)
        if not head:
            raise _damaged(binsha)
        kind = (head[0] >> 4) & 7
        i = 0
        while head[i] & 0x80:
            i += 1
            if i >= len(head):
                raise _damaged(binsha)
        if kind != _BLOB:  # a delta: read_blob rebuilds it
            yield store.read_blob(binsha)
            return
        f.seek(offset + i + 1)
        yield from _inflate(f, zlib.decompressobj(), binsha, chunk)


def _loose(f: BinaryIO, binsha: bytes, chunk: int) -> Iterator[bytes]:
    header: bytes | None = b""
    for piece in _inflate(f, zlib.decompressobj(), binsha, chunk):
        if header is not None:
            header += piece
            if b"\0" not in header:
                if len(header) > 64:
                    raise _damaged(binsha)
                continue
            kind, _, piece = header.partition(b"\0")
            if not kind.startswith(b"blob "):
                raise _damaged(binsha)
            header = None
            if not piece:
                continue
        yield piece
    if header is not None:
        raise _damaged(binsha)


def _inflate(f: BinaryIO, z: zlib._Decompress, binsha: bytes, chunk: int) -> Iterator[bytes]:
    data = b""
    while not z.eof:
        if not data:
            data = f.read(_READ)
            if not data:
                raise _damaged(binsha)
        try:
            out = z.decompress(data, chunk)
        except zlib.error:
            raise _damaged(binsha) from None
        data = z.unconsumed_tail
        if out:
            yield out


def _damaged(binsha: bytes) -> Corrupt:
    return Corrupt(f"store is damaged: object {binsha.hex()} cannot be read; run layerctl fsck")
