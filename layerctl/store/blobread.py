"""Reading many blobs fast, for writing layer tars.

dulwich reads one object at a time through a shared file object. Writing a
layer tar reads every file of the changeset, and inflating them is most of
the work; zlib releases the GIL, so here big blobs are inflated on worker
threads straight from an mmap of the pack while the caller writes the tar.
Pack lookups stay on the caller's thread. Objects this reader cannot take
(deltas, loose objects) come from the store's own reader.

A blob whose content is also a plain file on disk (a layer dir's copy) can be
read from that file instead (`submit_file`): reading and hashing it is ~3x
cheaper than inflating. The file is outside the store, so its content is taken
only if its git blob id is the stored one; otherwise the pack object is read.
"""

from __future__ import annotations

import mmap
import os
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias

from layerctl import faults
from layerctl.errors import Corrupt
from layerctl.store.objects import BLOB, object_id
from layerctl.store.packs import PackIndex

_zlib: ModuleType
try:  # ISA-L inflates git's zlib streams 2-3x faster than zlib (a save's largest cost)
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib still works
    _zlib = zlib
if TYPE_CHECKING:

    from layerctl.store.repo import Store
    from layerctl.store.staging import Staging

_INFLATE_ERRORS = (zlib.error, _zlib.error)
INLINE = 64 << 10  # below this blobs go to the threads in batches, not one by one
_BATCH_COUNT = 32  # small blobs per batch: enough to amortise the task, few enough
_BATCH_BYTES = 256 << 10  # to keep both cores busy from the start
STREAM = 64 << 20  # above this content is streamed in chunks, never held whole
_CHUNK = 1 << 20
_NON_DELTA = (1, 2, 3, 4)
# no following a symlink, no waiting on a fifo, no controlling tty from a device
_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _PackFile:
    def __init__(self, base: str) -> None:
        self.index = PackIndex(base + ".idx")
        with open(base + ".pack", "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def close(self) -> None:
        self.index.close()
        self.map.close()


def _header(mm: mmap.mmap, offset: int) -> tuple[int, int, int]:
    """(type, size, data offset) of the pack entry at `offset`."""
    byte = mm[offset]
    type_num = (byte >> 4) & 7
    size = byte & 15
    shift = 4
    pos = offset + 1
    while byte & 0x80:
        byte = mm[pos]
        pos += 1
        size |= (byte & 0x7F) << shift
        shift += 7
    return type_num, size, pos


def _inflate_chunks(mm: mmap.mmap, pos: int, size: int) -> Iterator[bytes]:
    """The object's content in chunks of at most _CHUNK bytes (for big blobs)."""
    try:
        yield from _chunks(mm, pos, size)
    except _INFLATE_ERRORS as e:
        raise _damaged(e) from None


def _chunks(mm: mmap.mmap, pos: int, size: int) -> Iterator[bytes]:
    dec = _zlib.decompressobj()
    got = 0
    end = len(mm)
    while not dec.eof:
        if dec.unconsumed_tail:
            data = dec.decompress(dec.unconsumed_tail, _CHUNK)
        else:
            if pos >= end:
                raise Corrupt("a pack ends inside an object")
            chunk = mm[pos : pos + _CHUNK]
            pos += len(chunk)
            data = dec.decompress(chunk, _CHUNK)
        if data:
            got += len(data)
            yield data
    if got != size:
        raise Corrupt(f"a pack object inflates to {got} bytes, its header says {size}")


def _inflate(mm: mmap.mmap, pos: int, size: int) -> bytes:
    try:
        return _whole(mm, pos, size)
    except _INFLATE_ERRORS as e:
        raise _damaged(e) from None


def _damaged(e: Exception) -> Corrupt:
    # ISA-L's errors are not zlib.error: either would reach the user as a traceback
    return Corrupt(f"store is damaged: a pack object does not inflate ({e}); run layerctl fsck")


def _whole(mm: mmap.mmap, pos: int, size: int) -> bytes:
    dec = _zlib.decompressobj()
    want = size + (size >> 10) + 64  # deflate never grows data by more than this
    parts = [dec.decompress(mm[pos : pos + want])]
    pos += want
    while not dec.eof:
        if pos >= len(mm):
            raise Corrupt("a pack ends inside an object")
        parts.append(dec.decompress(mm[pos : pos + _CHUNK]))
        pos += _CHUNK
    data = b"".join(parts)
    if len(data) != size:
        raise Corrupt(f"a pack object inflates to {len(data)} bytes, its header says {size}")
    return data


class Ready:
    """A content already in hand, with a future's result()/done()."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def result(self) -> bytes:
        return self.value

    def done(self) -> bool:
        return True


def _read_checked(path: bytes, binsha: bytes, size: int) -> bytes | None:
    """The content of the regular file `path` if it is the blob `binsha` of `size`
    bytes; None if it is not (other bytes, other size, not a regular file, unreadable):
    the caller then reads the stored blob."""
    try:
        fd = os.open(path, _READ_FILE)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None
        faults.point("blobread.file-read")  # opened and looked at, not read yet
        data = os.read(fd, size) if size else b""
        while len(data) < size:  # a short read: rare for a regular file
            more = os.read(fd, size - len(data))
            if not more:
                return None
            data += more
    except OSError:
        return None
    finally:
        os.close(fd)
    # the check that makes the file usable at all: anything done to it on disk
    # gives another id, and the pack object is read instead
    return data if object_id(BLOB, data) == binsha else None


# a worker's job: (_inflate, map, offset, size) or (_read_checked, path, blob id, size)
_Job: TypeAlias = "tuple[Callable[..., bytes | None], object, object, int]"


def _run_batch(items: list[_Job]) -> list[bytes | None | Exception]:
    out: list[bytes | None | Exception] = []
    for fn, a, b, size in items:
        try:
            out.append(fn(a, b, size))
        except Exception as e:  # noqa: BLE001 - raised by that blob's result() alone
            out.append(e)
    return out


class _Batch:
    """Small blobs inflated (or files read) together by one worker task: a future per
    blob costs more than inflating it, but inflating them on the caller's thread keeps
    that core busy with what another could do (ISA-L and hashlib release the GIL)."""

    __slots__ = ("items", "future", "pool")

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.items: list[_Job] = []
        self.future: Future[list[bytes | None | Exception]] | None = None
        self.pool = pool

    def send(self) -> None:
        if self.future is None:
            self.future = self.pool.submit(_run_batch, self.items)


class _Batched:
    __slots__ = ("batch", "index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self.batch = batch
        self.index = index

    def result(self) -> bytes:  # None for a file that is not the blob (_Checked)
        batch = self.batch
        if batch.future is None:
            batch.send()
        assert batch.future is not None
        value = batch.future.result()[self.index]
        if isinstance(value, Exception):
            raise value
        return value  # type: ignore[return-value]


class _Checked:
    """A file read by submit_file: its content, or (not the blob) the stored one."""

    __slots__ = ("read", "reader", "binsha", "size")

    def __init__(self, read: Future[bytes | None] | _Batched, reader: BlobReader,
                 binsha: bytes, size: int) -> None:
        self.read = read
        self.reader = reader
        self.binsha = binsha
        self.size = size

    def result(self) -> bytes:
        data = self.read.result()
        if data is None:
            self.reader.mismatched += 1
            return self.reader.submit(self.binsha, self.size).result()
        self.reader.from_files += 1
        return data


# submit() and submit_file() give: .result() is the content
Pending: TypeAlias = "Future[bytes] | Ready | _Batched | _Checked"


class BlobReader:
    """Blob contents by id from the packs at `bases` (paths without .pack/.idx), else
    from `fallback(binsha)`. Use as a context manager."""

    def __init__(
        self,
        bases: list[str],
        fallback: Callable[[bytes], bytes],
        threads: int | None = None,
        kept: dict[bytes, bytes] | None = None,
    ) -> None:
        self.packs = [_PackFile(b) for b in bases]
        self.fallback = fallback
        self.pool = ThreadPoolExecutor(threads or max(2, os.cpu_count() or 2))
        self.kept = kept or {}
        self._batch = _Batch(self.pool)
        self._batch_size = 0
        self.from_files = 0  # contents taken from files (submit_file)
        self.mismatched = 0  # files given to submit_file that were not their blob

    @classmethod
    def for_store(cls, store: Store | Staging, extra: Sequence[str] = (),
                  kept: dict[bytes, bytes] | None = None) -> BlobReader:
        """A reader over `extra` packs (e.g. staged ones) and every pack of `store`;
        `kept`: contents still in memory (blob id -> bytes) from the apply that just
        wrote them, served first so a DiffID pass need not inflate them again."""
        pack_dir = store.path("objects", "pack")
        try:
            names = sorted(os.listdir(pack_dir))
        except FileNotFoundError:
            names = []
        bases = [
            os.path.join(pack_dir, n[:-4])
            for n in names
            if n.endswith(".idx") and n[:-4] + ".pack" in names
        ]
        return cls([*extra, *bases], store.read_blob, kept=kept)

    def _locate(self, binsha: bytes) -> tuple[mmap.mmap, int, int] | None:
        for pack in self.packs:
            offset = pack.index.offset(binsha)
            if offset is None:
                continue
            type_num, size, pos = _header(pack.map, offset)
            if type_num not in _NON_DELTA:
                return None
            if type_num != BLOB:
                raise Corrupt(f"object {binsha.hex()} is not a blob")
            return pack.map, pos, size
        return None

    def submit(self, binsha: bytes, size_hint: int) -> Pending:
        """Start reading a blob of about `size_hint` bytes; .result() gives its content."""
        data = self.kept.get(binsha)
        if data is not None:
            return Ready(data)
        found = self._locate(binsha)
        if found is None:
            return Ready(self.fallback(binsha))
        mm, pos, size = found
        if size < INLINE:
            return self._batched((_inflate, mm, pos, size))
        self.flush()  # blobs are wanted in the order asked for
        return self.pool.submit(_inflate, mm, pos, size)

    def submit_file(self, path: bytes, binsha: bytes, size: int) -> _Checked:
        """Start reading the blob `binsha` of `size` bytes from the file `path` (a copy
        of it outside the store); .result() gives the file's content if its blob id is
        `binsha`, else the stored blob's (counted in `mismatched`)."""
        if size < INLINE:
            read: Future[bytes | None] | _Batched = self._batched(
                (_read_checked, path, binsha, size))
        else:
            self.flush()
            read = self.pool.submit(_read_checked, path, binsha, size)
        return _Checked(read, self, binsha, size)

    def _batched(self, job: _Job) -> _Batched:
        batch = self._batch
        if batch.future is not None:  # sent by a result() asked for early
            batch = self._batch = _Batch(self.pool)
            self._batch_size = 0
        batch.items.append(job)
        pending = _Batched(batch, len(batch.items) - 1)
        self._batch_size += job[3]
        if len(batch.items) >= _BATCH_COUNT or self._batch_size >= _BATCH_BYTES:
            self.flush()
        return pending

    def flush(self) -> None:
        """Start inflating the small blobs submitted so far."""
        if self._batch.items:
            self._batch.send()
            self._batch = _Batch(self.pool)
            self._batch_size = 0

    def stream(self, binsha: bytes) -> Iterator[bytes] | None:
        """The content of a big blob in chunks (None: use submit())."""
        found = self._locate(binsha)
        if found is None:
            return None
        mm, pos, size = found
        return _inflate_chunks(mm, pos, size)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for pack in self.packs:
            pack.close()
        self.packs = []

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
