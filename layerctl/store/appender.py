"""A file appended on a thread of its own, for the pack writer: the main thread only
gathers bytes (a memcpy) while the write syscalls, which release the GIL, run beside
it on the other core."""

from __future__ import annotations

import queue
import threading
from typing import BinaryIO


class Appender:
    """Appends to the pack file on a thread of its own: the main thread only gathers
    bytes (a memcpy) and the write syscalls, which release the GIL, run beside it.
    Errors of a write (a full disk) are raised by the next write, sync or close."""

    _SIZE = 1 << 20

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._buf = bytearray()
        self._queue: queue.Queue[bytearray | None] = queue.Queue(8)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            try:
                if data is None:
                    return
                if self._error is None:
                    self._file.write(data)
            except BaseException as e:  # raised on the caller's thread
                self._error = e
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= self._SIZE:
            self._hand_over()

    def _hand_over(self) -> None:
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pack writer", daemon=True)
            self._thread.start()
        self._queue.put(self._buf)
        self._buf = bytearray()

    def sync(self) -> None:
        """Everything written so far is in the file (its buffer, not flushed)."""
        if self._buf:
            self._hand_over()
        self._queue.join()
        self._raise()

    def close(self, check: bool = True) -> None:
        """sync(), and the thread ends; with check=False errors are dropped."""
        try:
            if check:
                self.sync()
        finally:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None
            self._buf = bytearray()
