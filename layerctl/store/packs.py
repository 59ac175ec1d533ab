"""Reading objects out of git pack files, without dulwich.

`status`, `images` and `ps` read a commit and a few trees; importing dulwich's object
store for that costs ~7 ms of a ~50 ms command (logging, difflib, its pack module).
This reader does only what reads need: find an id in a version 1 or 2 pack index
(fan-out table, then a binary search), and inflate the entry at that offset,
applying deltas (OFS_DELTA within the pack; REF_DELTA through the store, since a
thin base may live anywhere). The index of a pack layerctl writes is written here
too (`write_index`, beside the reader of its format). Verifying and id-prefix
searches stay with dulwich (store/validate.py, Store.ids_with_prefix).

A damaged index or pack raises ValueError, struct.error, IndexError or zlib.error:
the kinds `store.repo.is_damage` turns into "store is damaged; run layerctl fsck".
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO

OFS_DELTA, REF_DELTA = 6, 7
_V2_MAGIC = b"\377tOc"
_FANOUT = 256 * 4
_MAX_DELTA_CHAIN = 10_000  # git's own limit is far lower; this only stops a loop
_SCAN_IDS = 1024  # ids sharing a first byte scanned at once (a pack of ~250k objects)
# Objects up to this size (trees, records: most of what a read command reads) are
# inflated in one call. Its output is not bounded as the loop's is, but a stream of at
# most _ONE_SHOT + 64 bytes inflates to no more than ~4 MiB, however it is made.
_ONE_SHOT = 1 << 12
_U32, _U64 = struct.Struct(">L"), struct.Struct(">Q")

ReadRaw = Callable[[bytes], tuple[int, bytes]]


def write_index(out: BinaryIO, entries: list[tuple[bytes, int, int]],
                pack_checksum: bytes) -> None:
    """Write a version 2 pack index of `entries` (binary id, offset, crc32), sorted by
    id, for the pack whose trailing checksum is `pack_checksum` (gitformat-pack(5))."""
    from hashlib import sha1

    counts = [0] * 256
    for sha, _offset, _crc in entries:
        counts[sha[0]] += 1
    fanout, total = [], 0
    for n in counts:
        total += n
        fanout.append(total)
    small: list[int] = []
    large: list[int] = []
    for _sha, offset, _crc in entries:
        if offset < 0x80000000:
            small.append(offset)
        else:  # git's rule: an offset of 2 GiB or more goes to the 8-byte table
            small.append(0x80000000 | len(large))
            large.append(offset)
    body = b"".join((
        _V2_MAGIC, struct.pack(">L", 2), struct.pack(">256L", *fanout),
        b"".join(sha for sha, _offset, _crc in entries),
        struct.pack(f">{len(entries)}L", *(crc for _sha, _offset, crc in entries)),
        struct.pack(f">{len(small)}L", *small), struct.pack(f">{len(large)}Q", *large),
        pack_checksum,
    ))
    out.write(body)
    out.write(sha1(body).digest())


def _map(path: str) -> mmap.mmap:
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # ValueError when empty


class PackIndex:
    """A .idx file: binary object id -> offset in its pack."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._map = _map(path)
        m = self._map
        if m[:4] == _V2_MAGIC:
            (version,) = struct.unpack(">L", m[4:8])
            if version != 2:
                raise ValueError(f"{path}: unsupported pack index version {version}")
            self._fanout_at = 8
        else:
            self._fanout_at = 0  # version 1 has no header
        # The fan-out table, read once: entry b = how many ids start with a byte <= b.
        self._fanout = struct.unpack(">256L", m[self._fanout_at:self._fanout_at + _FANOUT])
        self.count: int = self._fanout[255]
        self.pack_checksum = m[len(m) - 40:len(m) - 20]  # the pack's own trailer
        if self._fanout_at:
            self._ids_at = 8 + _FANOUT
            self._offsets_at = self._ids_at + self.count * 24  # ids, then CRC32s
            self._large_at = self._offsets_at + self.count * 4
        else:
            self._ids_at = _FANOUT + 4  # entries are (offset, id): the id follows 4 bytes

    def _id(self, i: int) -> bytes:
        if self._fanout_at:
            at = self._ids_at + i * 20
        else:
            at = self._ids_at + i * 24
        return self._map[at:at + 20]

    def offset(self, binsha: bytes) -> int | None:
        """The offset of `binsha` in the pack, or None when the pack lacks it."""
        first = binsha[0]
        hi = self._fanout[first]
        lo = self._fanout[first - 1] if first else 0
        if hi > self.count or lo > hi:
            raise ValueError(f"{self.path}: bad fan-out table")
        if self._fanout_at and hi - lo <= _SCAN_IDS:
            # Version 2 keeps the ids in one sorted run of 20-byte entries: one scan of
            # the few that share the first byte (in C) beats a search step by step
            # in Python. A hit off the 20-byte grid is a coincidence inside other ids.
            m = self._map
            start, end = self._ids_at + lo * 20, self._ids_at + hi * 20
            at = m.find(binsha, start, end)
            while at >= 0 and (at - start) % 20:
                at = m.find(binsha, at + 1, end)
            if at < 0:
                return None
            i = lo + (at - start) // 20
            off: int = _U32.unpack_from(m, self._offsets_at + i * 4)[0]
            return off if not off & 0x80000000 else self._offset_of(i)  # (a large offset)
        while lo < hi:
            mid = (lo + hi) // 2
            here = self._id(mid)
            if here < binsha:
                lo = mid + 1
            elif here > binsha:
                hi = mid
            else:
                return self._offset_of(mid)
        return None

    def _offset_of(self, i: int) -> int:
        m = self._map
        if not self._fanout_at:
            first_: int = _U32.unpack_from(m, _FANOUT + i * 24)[0]
            return first_
        off: int = _U32.unpack_from(m, self._offsets_at + i * 4)[0]
        if off & 0x80000000:  # an index into the table of 8-byte offsets
            off = _U64.unpack_from(m, self._large_at + (off & 0x7FFFFFFF) * 8)[0]
        return off

    def close(self) -> None:
        self._map.close()


class Pack:
    """A pack file and its index; `read` gives (type number, content) of one object."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.index = PackIndex(base + ".idx")
        self._map: mmap.mmap | None = None

    def read(self, binsha: bytes, read_raw: ReadRaw) -> tuple[int, bytes] | None:
        """The object, or None when this pack lacks it. `read_raw` finds the base of a
        REF_DELTA (anywhere in the store)."""
        offset = self.index.offset(binsha)
        if offset is None:
            return None
        m = self._map
        if m is None:
            m = self._open_pack()
            self._map = m
        c = m[offset]  # the object's header, read here for the common case
        type_num = (c >> 4) & 7
        if 1 <= type_num <= 4:  # stored whole, as most are: no delta chain to follow
            size = c & 15
            shift = 4
            pos = offset + 1
            while c & 0x80:
                c = m[pos]
                size |= (c & 0x7F) << shift
                shift += 7
                pos += 1
            return type_num, self._inflate(pos, size)
        deltas: list[bytes] = []
        while True:
            type_num, size, pos = self._header(offset)
            if type_num == OFS_DELTA:
                back, pos = self._ofs(pos)
                if not 0 < back <= offset:
                    raise ValueError(f"{self.base}.pack: bad delta base offset")
                deltas.append(self._inflate(pos, size))
                offset -= back
            elif type_num == REF_DELTA:
                base_id = m[pos:pos + 20]
                deltas.append(self._inflate(pos + 20, size))
                type_num, data = read_raw(base_id)
                break
            elif 1 <= type_num <= 4:
                data = self._inflate(pos, size)
                break
            else:
                raise ValueError(f"{self.base}.pack: bad object type {type_num}")
            if len(deltas) > _MAX_DELTA_CHAIN:
                raise ValueError(f"{self.base}.pack: delta chain too long")
        for delta in reversed(deltas):
            data = apply_delta(data, delta)
        return type_num, data

    def whole_at(self, offset: int, limit: int) -> bytes | None:
        """The object at `offset` when it is stored whole (not as a delta) and holds at
        most `limit` bytes, inflated from the map in one piece; else None (the caller
        reads it in pieces)."""
        if self._map is None:
            self._map = self._open_pack()
        type_num, size, pos = self._header(offset)
        if not 1 <= type_num <= 4 or size > limit:
            return None
        return self._inflate(pos, size)

    def _open_pack(self) -> mmap.mmap:
        """The pack, mapped, once its header and trailer agree with the index: as git
        does, a truncated or replaced pack is refused whole, not read where it happens
        to be intact (the trailer is the pack's checksum, which the index repeats)."""
        m = _map(self.base + ".pack")
        version, count = struct.unpack(">LL", m[4:12]) if len(m) >= 32 else (0, -1)
        if (m[:4] != b"PACK" or version not in (2, 3) or count != self.index.count
                or m[-20:] != self.index.pack_checksum):
            m.close()
            raise ValueError(f"{self.base}.pack does not match its index")
        return m

    def _header(self, pos: int) -> tuple[int, int, int]:
        m = self._map
        assert m is not None
        if pos >= len(m):
            raise ValueError(f"{self.base}.pack: offset {pos} is past the end")
        c = m[pos]
        type_num = (c >> 4) & 7
        size = c & 15
        shift = 4
        pos += 1
        while c & 0x80:
            c = m[pos]
            size |= (c & 0x7F) << shift
            shift += 7
            pos += 1
        return type_num, size, pos

    def _ofs(self, pos: int) -> tuple[int, int]:
        m = self._map
        assert m is not None
        c = m[pos]
        back = c & 0x7F
        pos += 1
        while c & 0x80:
            c = m[pos]
            back = ((back + 1) << 7) | (c & 0x7F)
            pos += 1
        return back, pos

    def _inflate(self, pos: int, size: int) -> bytes:
        m = self._map
        assert m is not None
        if size <= _ONE_SHOT:
            # Most objects (trees, records, small files) are small: one call, no
            # decompressor object. Deflate grows data by at most 5 bytes per stored
            # block plus its header and trailer, so the slice holds the whole stream;
            # what follows it is ignored. A stream cut short falls to the loop below.
            try:
                data = zlib.decompress(m[pos:pos + size + 64], bufsize=size + 1)
            except zlib.error:
                pass
            else:
                if len(data) != size:
                    raise ValueError(f"{self.base}.pack: object size does not match its header")
                return data
        d = zlib.decompressobj()
        out = []
        got = 0
        step = max(size + 64, 4096)
        while not d.eof:
            chunk = m[pos:pos + step]
            if not chunk:
                raise ValueError(f"{self.base}.pack: object data is truncated")
            pos += len(chunk)
            part = d.decompress(chunk, size + 1 - got)
            got += len(part)
            out.append(part)
            if got > size:
                break  # larger than its header says: refused below
        data = b"".join(out)
        if len(data) != size:
            raise ValueError(f"{self.base}.pack: object size does not match its header")
        return data

    def close(self) -> None:
        self.index.close()
        if self._map is not None:
            self._map.close()
            self._map = None


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the little-endian base-128 number at `pos` (git's
    delta sizes; also tar-split records): ValueError if it is cut off or over 64 bits."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        c = data[pos]
        pos += 1
        value |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return value, pos


def apply_delta(base: bytes, delta: bytes) -> bytes:
    """Git's delta format: the base's size, the result's size, then copy-from-base and
    insert-literal instructions."""
    base_size, pos = read_varint(delta, 0)
    size, pos = read_varint(delta, pos)
    if base_size != len(base):
        raise ValueError("delta does not fit its base")
    out = bytearray()
    end = len(delta)
    while pos < end:
        op = delta[pos]
        pos += 1
        if op & 0x80:  # copy: which offset and size bytes follow is in the op's bits
            offset = length = 0
            for i in range(4):
                if op & (1 << i):
                    offset |= delta[pos] << (8 * i)
                    pos += 1
            for i in range(3):
                if op & (0x10 << i):
                    length |= delta[pos] << (8 * i)
                    pos += 1
            length = length or 0x10000
            if offset + length > base_size:
                raise ValueError("delta copies past the end of its base")
            out += base[offset:offset + length]
        elif op:
            out += delta[pos:pos + op]
            pos += op
        else:
            raise ValueError("delta has a reserved instruction")
    if len(out) != size:
        raise ValueError("delta result has the wrong size")
    return bytes(out)


def pack_bases(pack_dir: str) -> list[str]:
    """The packs in `pack_dir` that have their index (paths without the extension);
    a pack is renamed into place before its index, so one without is not done yet."""
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        return []
    return sorted(os.path.join(pack_dir, n[:-5]) for n in names
                  if n.endswith(".pack") and n[:-5] + ".idx" in names)
