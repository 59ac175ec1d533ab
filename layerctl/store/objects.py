"""Writing git objects fast: hash and compress on worker threads, one pack per operation.

zlib and hashlib release the GIL on large buffers, so the two cores both work.
Objects already in the store are skipped. The pack is renamed into place
before its index, and git ignores a pack without an index, so a kill at any
instant leaves a valid repository.

The pack file is appended by store/appender.py's thread; directory fsyncs are
layerctl.atomic's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from layerctl import faults
from layerctl.atomic import fsync_dir
from layerctl.beneath import Changed, chunks_exact, read_exact, same_file
from layerctl.errors import NoSpace, is_no_space
from layerctl.store import debris
from layerctl.store.packs import write_index

if TYPE_CHECKING:
    import hashlib
    from concurrent.futures import Future


# hashlib (OpenSSL, ~2 ms) and isal are imported on first use: the commands that only
# read (status, images, ps) never hash or deflate, and start-up is most of their time.


@cache
def _deflater() -> ModuleType:
    try:  # ISA-L deflates 5x faster than zlib at level 1, same ratio, same zlib format
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency
        return zlib
    return isal_zlib


def _sha1(data: bytes = b"") -> hashlib._Hash:
    import hashlib

    return hashlib.sha1(data)

BLOB, TREE, COMMIT = 3, 2, 1
TYPE_NAMES = {BLOB: b"blob", TREE: b"tree", COMMIT: b"commit"}
MODE_TREE, MODE_FILE, MODE_EXEC, MODE_LINK = b"40000", b"100644", b"100755", b"120000"
BIG_FILE = 64 << 20  # files above this are streamed, not held in memory
SMALL_FILE = 64 << 10  # below this a worker thread costs more than it saves
_CHUNK = 1 << 20
# small in-memory blobs go to the workers in batches: a future per blob cost the
# pull of Debian a tenth of its main thread
_BATCH_BYTES = 1 << 20
_BATCH_COUNT = 128
_BATCH = "batch"


def object_id(type_num: int, data: bytes) -> bytes:
    """The binary git object id of `data`."""
    h = _sha1(b"%s %d\0" % (TYPE_NAMES[type_num], len(data)))
    h.update(data)
    return h.digest()


def tree_sort_key(entry: tuple[bytes, bytes, bytes]) -> bytes:
    name, mode, _ = entry
    return name + b"/" if mode == MODE_TREE else name


def serialize_tree(entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """(name, mode, binary id) entries -> git tree bytes, in git's order."""
    return b"".join(
        mode + b" " + name + b"\0" + sha for name, mode, sha in sorted(entries, key=tree_sort_key)
    )


def parse_tree(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """Git tree bytes -> (name, mode, binary id) entries."""
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        out.append((data[space + 1 : nul], data[pos:space], data[nul + 1 : nul + 21]))
        pos = nul + 21
    return out


def _pack_header(type_num: int, size: int) -> bytes:
    out = bytearray()
    c = (type_num << 4) | (size & 15)
    size >>= 4
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


class PackWriter:
    """Collects new objects into one pack file under `objects/pack`.

    `exists(binary_id)` tells which objects the store already has. Use as a
    context manager: a clean exit lands the pack, an exception discards it.
    """

    def __init__(
        self,
        pack_dir: str,
        exists: Callable[[bytes], bool],
        level: int = 1,
        threads: int | None = None,
    ) -> None:
        self.pack_dir = pack_dir
        self._exists = exists
        self._level = level
        os.makedirs(pack_dir, exist_ok=True)
        # here, not at the top: status, images and waste never write packs
        import tempfile
        import threading
        from concurrent.futures import ThreadPoolExecutor

        from layerctl.store.appender import Appender

        debris.clean_temps(pack_dir)  # packs of writers killed before finishing
        fd, self._tmp = tempfile.mkstemp(prefix=debris.temp_prefix("pack"), dir=pack_dir)
        self._file = os.fdopen(fd, "wb")
        self._out = Appender(self._file)
        self._out.write(b"PACK" + struct.pack(">LL", 2, 0))
        self._offset = 12
        self._entries: dict[bytes, tuple[int, int]] = {}  # id -> (offset, crc32)
        self._pool = ThreadPoolExecutor(threads or max(2, os.cpu_count() or 2))
        # (job, callback(s), with_data or _BATCH): a batch is one job for many callbacks
        self._pending: deque[tuple[Any, Any, Any]] = deque()
        self._window = 64  # queued jobs, and at most _window_bytes of content in flight
        self._window_bytes = 256 << 20
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._fds: dict[object, int] = {}  # queued job -> the fd it reads and closes
        self._batch: list[tuple[bytes, Callable[[bytes], None]]] = []
        self._batch_bytes = 0
        self.bytes_in = 0
        self.pack_path: str | None = None

    # -- adding objects -------------------------------------------------

    def has(self, sha: bytes) -> bool:
        if sha in self._entries:
            return True
        with self._lock:  # dulwich's pack cache is not made for concurrent refreshes
            return self._exists(sha)

    def add(self, type_num: int, data: bytes) -> bytes:
        """Add an object now (trees, commits, small blobs); returns its binary id."""
        sha = object_id(type_num, data)
        if not self.has(sha):
            self._write(sha, type_num, len(data), [_compress(data, self._level)])
        return sha

    def add_file(
        self,
        source: bytes | int,
        size: int,
        on_done: Callable[..., None],
        with_data: bool = False,
        expect: os.stat_result | None = None,
        label: bytes | str = b"",
        tee: Callable[[bytes], None] | None = None,
    ) -> None:
        """Hash (and, if new, compress) a file's content as a blob, reading it once.

        `source` is a path, or an fd open for reading that the writer closes
        (from beneath.Tree.open_file: the inode a scan checked). The content
        must be `size` bytes and, with `expect` (the scan's stat), the file must
        still have its size and mtime after the read; else Changed(label) is
        raised, here or by a later call, and no object is kept for it.
        `on_done(binary_id)` — or `on_done(binary_id, content)` with
        `with_data` (content is None for big files, which are streamed) — is
        called on this thread, in submission order, by a later call or drain().
        `tee(chunk)` also gets a big file's content, from the same read.
        """
        label = label or (source if isinstance(source, bytes) else b"")
        fd = source if isinstance(source, int) else _open_regular(source, expect, label)
        if size > BIG_FILE:
            try:
                self.drain()
                sha = self._add_big_file(fd, size, expect, label, tee)
            finally:
                os.close(fd)
            on_done(sha, None) if with_data else on_done(sha)
            return
        if size < SMALL_FILE:
            job: _Job = _Done(self._hash_fd(fd, size, expect, label))
        else:
            job = self._pool.submit(self._hash_fd, fd, size, expect, label)
            self._fds[job] = fd
        self._queue(job, on_done, with_data, size)

    def add_blob_async(self, data: bytes, on_done: Callable[[bytes], None]) -> None:
        """Like add_file() for content already in memory."""
        if len(data) >= SMALL_FILE:
            self._queue(self._pool.submit(self._hash_bytes, data), on_done, False, len(data))
            return
        self._batch.append((data, on_done))
        self._batch_bytes += len(data)
        if self._batch_bytes >= _BATCH_BYTES or len(self._batch) >= _BATCH_COUNT:
            self._flush_batch()

    def _flush_batch(self) -> None:
        batch, size = self._batch, self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        job = self._pool.submit(self._hash_batch, [data for data, _ in batch])
        self._enqueue(job, [on_done for _, on_done in batch], _BATCH, size)

    def then(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once everything queued before it has landed (keeps order)."""
        self._queue(None, callback, None)

    def _queue(
        self, job: _Job | None, callback: Callable[..., None], with_data: bool | None,
        size: int = 0
    ) -> None:
        if self._batch:
            self._flush_batch()  # callbacks keep the order of the calls
        self._enqueue(job, callback, with_data, size)

    def _enqueue(self, job: object, callback: object, with_data: object, size: int) -> None:
        self._pending.append((job, callback, with_data))
        self._pending_bytes += size
        while len(self._pending) > self._window or self._pending_bytes > self._window_bytes:
            self._land(*self._pending.popleft())

    def drain(self) -> None:
        if self._batch:
            self._flush_batch()
        while self._pending:
            self._land(*self._pending.popleft())

    def _hash_bytes(self, data: bytes) -> _Hashed:
        sha = object_id(BLOB, data)
        if self.has(sha):
            return sha, data, None
        header = _pack_header(BLOB, len(data))
        compressed = _compress(data, self._level)
        return sha, data, (header, compressed, zlib.crc32(compressed, zlib.crc32(header)))

    def _hash_batch(self, blobs: list[bytes]) -> list[_Hashed]:
        return [self._hash_bytes(data) for data in blobs]

    def _hash_fd(self, fd: int, size: int, expect: os.stat_result | None,
                 label: bytes | str) -> _Hashed:
        try:
            data = read_exact(fd, size, expect, label)
        finally:
            os.close(fd)
        return self._hash_bytes(data)

    def _land(self, job: Any, callback: Any, with_data: Any) -> None:
        if job is None:
            callback()
            return
        if with_data is _BATCH:
            for result, on_done in zip(job.result(), callback, strict=True):
                self._land_one(result, on_done, False)
            return
        self._fds.pop(job, None)
        self._land_one(job.result(), callback, with_data)

    def _land_one(self, result: _Hashed, callback: Callable[..., None],
                  with_data: bool | None) -> None:
        sha, data, entry = result
        self._pending_bytes -= len(data)
        self.bytes_in += len(data)
        if entry is not None and sha not in self._entries:
            faults.point("pack.write-object")  # #N: a kill with N-1 objects in the pack
            header, compressed, crc = entry
            try:  # _no_space's rule, without a context manager per object
                self._out.write(header)
                self._out.write(compressed)
            except OSError as e:
                raise self._full(e) from None
            self._entries[sha] = (self._offset, crc & 0xFFFFFFFF)
            self._offset += len(header) + len(compressed)
        callback(sha, data) if with_data else callback(sha)

    def _add_big_file(self, fd: int, size: int, expect: os.stat_result | None,
                      label: bytes | str, tee: Callable[[bytes], None] | None) -> bytes:
        """Hash and deflate in one pass over `fd`, straight into the pack. Until
        the byte count and the stat check pass, the object is not an entry, and
        on any failure (or when the store already has it) the pack is cut back."""
        start = self._offset
        header = _pack_header(BLOB, size)
        h = _sha1(b"blob %d\0" % size)
        comp = _deflater().compressobj(min(self._level, 3))
        write = self._out.write
        write(header)
        crc = zlib.crc32(header)
        length = len(header)
        kept = False
        try:
            for chunk in chunks_exact(fd, size, expect, label, _CHUNK):
                faults.point("pack.read-big-chunk")
                h.update(chunk)
                if tee is not None:
                    tee(chunk)
                out = comp.compress(chunk)
                crc = zlib.crc32(out, crc)
                write(out)
                length += len(out)
            out = comp.flush()
            crc = zlib.crc32(out, crc)
            write(out)
            length += len(out)
            sha = h.digest()
            self.bytes_in += size
            kept = sha not in self._entries and not self.has(sha)
        finally:
            if not kept:
                self._out.sync()
                self._file.truncate(start)  # flushes first; the position stays
                self._file.seek(start)
        if kept:
            self._entries[sha] = (start, crc & 0xFFFFFFFF)
            self._offset = start + length
        return sha

    def _write(self, sha: bytes, type_num: int, size: int, chunks: list[bytes]) -> None:
        faults.point("pack.write-object")  # #N: a kill with N-1 objects in the temporary pack
        with self._no_space():
            self._append(sha, type_num, size, chunks)

    @contextlib.contextmanager
    def _no_space(self) -> Iterator[None]:
        # A full disk must not read as one of the errors the callers make of other
        # OSErrors ("cannot read FILE", "changed while committing"): NoSpace is no OSError.
        try:
            yield
        except OSError as e:
            raise self._full(e) from None

    def _full(self, e: OSError) -> OSError | NoSpace:
        """`e`, or NoSpace naming the store when `e` says the disk is full."""
        if is_no_space(e):
            return NoSpace(self.pack_dir.rpartition(os.sep + "objects")[0] or self.pack_dir)
        return e

    def _append(self, sha: bytes, type_num: int, size: int, chunks: list[bytes]) -> None:
        header = _pack_header(type_num, size)
        crc = zlib.crc32(header)
        self._out.write(header)
        length = len(header)
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            self._out.write(chunk)
            length += len(chunk)
        self._entries[sha] = (self._offset, crc & 0xFFFFFFFF)
        self._offset += length

    # -- landing ----------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self._entries)

    def finish(self) -> str | None:
        """Write the index and move the pack into place; returns its path (None if empty)."""
        self.drain()
        with self._no_space():
            return self._finish()

    def _finish(self) -> str | None:
        self._pool.shutdown()
        self._out.close()
        if not self._entries:
            self.abort()
            return None
        self._file.seek(8)
        self._file.write(struct.pack(">L", len(self._entries)))
        self._file.close()
        h = _sha1()
        with open(self._tmp, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        checksum = h.digest()
        with open(self._tmp, "ab") as f:
            f.write(checksum)
            f.flush()
            os.fsync(f.fileno())
        base = os.path.join(self.pack_dir, "pack-" + checksum.hex())
        entries = sorted((sha, off, crc) for sha, (off, crc) in self._entries.items())
        idx_tmp = self._tmp + ".idx"
        with open(idx_tmp, "wb") as f:
            write_index(f, entries, checksum)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(self._tmp, 0o444)
        os.chmod(idx_tmp, 0o444)
        faults.point("pack.rename-pack")
        os.rename(self._tmp, base + ".pack")
        faults.point("pack.rename-index")
        os.rename(idx_tmp, base + ".idx")
        fsync_dir(self.pack_dir)
        self.pack_path = base + ".pack"
        return self.pack_path

    def abort(self) -> None:
        for job, _callback, _with_data in self._pending:
            if job is not None and job.cancel() and job in self._fds:
                os.close(self._fds.pop(job))  # never ran: its fd is still open
        self._pending.clear()
        self._batch.clear()
        self._pool.shutdown(wait=True)
        self._out.close(check=False)
        if not self._file.closed:
            with contextlib.suppress(OSError):  # flushing what is left fails on a full disk
                self._file.close()
        for path in (self._tmp, self._tmp + ".idx"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def _compress(data: bytes, level: int) -> bytes:
    # A window no larger than the data compresses identically and sets up far
    # faster: zlib's 32 KiB default costs ~20 us per tiny object.
    wbits = min(15, max(9, (len(data) - 1).bit_length()))
    if level > 3:  # ISA-L has levels 0-3; higher ones are zlib's
        return zlib.compress(data, level, wbits)
    out: bytes = _deflater().compress(data, level, wbits)
    return out


class _Done:
    """An already computed result, queued so callbacks keep submission order."""

    __slots__ = ("value",)

    def __init__(self, value: _Hashed) -> None:
        self.value = value

    def result(self) -> _Hashed:
        return self.value

    def cancel(self) -> bool:
        return False


_Hashed = tuple[bytes, bytes, "tuple[bytes, bytes, int] | None"]  # (id, content, pack entry)
_Job: TypeAlias = "_Done | Future[_Hashed]"


_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _open_regular(path: bytes, expect: os.stat_result | None, label: bytes | str) -> int:
    """`path` opened for reading if it is (still) a regular file (the one `expect`
    describes): O_NONBLOCK so a FIFO swapped in cannot block the open."""
    try:
        fd = os.open(path, _OPEN)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            raise Changed(label) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (expect is not None and not same_file(st, expect)):
        os.close(fd)
        raise Changed(label)
    return fd
