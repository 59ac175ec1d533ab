"""A file-like reader over a chunk iterator that a thread fills ahead of the reader,
so the network (and the digest check in the iterator) overlaps the work on the data."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable

AHEAD = 64  # chunks buffered (1 MiB each from the registry client)
_END = object()


class Prefetch:
    """read(n) over `chunks`; errors raised by the iterator surface in read()."""

    def __init__(
        self, chunks: Iterable[bytes], progress: Callable[[int], None] | None = None
    ) -> None:
        self._queue: queue.Queue = queue.Queue(AHEAD)
        self._stop = threading.Event()
        self._buffer = memoryview(b"")
        self._done = False
        self._progress = progress
        self._count = 0
        self._thread = threading.Thread(target=self._fill, args=(chunks,), daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the reader
            self._put(e)

    def _next(self) -> bool:
        item = self._queue.get()
        if item is _END:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._buffer = memoryview(item)
        self._count += len(item)
        if self._progress is not None:
            self._progress(self._count)
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [bytes(self._buffer)]
            self._buffer = memoryview(b"")
            while not self._done and self._next():
                parts.append(bytes(self._buffer))
                self._buffer = memoryview(b"")
            return b"".join(parts)
        if not self._buffer:
            if self._done or not self._next():
                return b""
        data = bytes(self._buffer[:n])
        self._buffer = self._buffer[n:]
        return data

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
