"""The pools that write a layer dir's files (containers/layerbuild.py): `Lanes` for a
layer of many entries, `Inline` for a few (threads would cost more than they save), and
`Batches`, which hands them a directory's entries a batch at a time.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future

    from layerctl.store.blobread import Ready


_BATCH = 32  # entries handed to a writer at once
_BATCH_BYTES = 1 << 20


class Inline:
    """A pool that runs each job at once (a small layer: threads would cost more)."""

    def submit(self, fn: Callable[..., None], *args: object) -> Ready:
        fn(*args)
        from layerctl.store.blobread import Ready

        return Ready(b"")

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class Lanes:
    """`n` one-thread pools; the entries of one directory all go to the same lane.
    Two threads creating files in one directory spin on its lock: perf of a Debian
    load showed ~30% of its kernel time in rwsem_spin_on_owner under path_openat."""

    def __init__(self, n: int) -> None:
        from concurrent.futures import ThreadPoolExecutor  # not at import: status reads us

        self._lanes = [ThreadPoolExecutor(1, thread_name_prefix="layerdir") for _ in range(n)]

    def submit(self, fn: Callable[..., None], target: bytes, *args: object) -> Future[None]:
        lane = self._lanes[zlib.crc32(os.path.dirname(target)) % len(self._lanes)]
        return lane.submit(fn, target, *args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=wait, cancel_futures=cancel_futures)


class Batches:
    """Entries of one directory go to a writer together, a batch per job (one
    future and one hand-over per ~_BATCH entries instead of per file); the contents
    held by queued batches are bounded by `max_ahead` bytes."""

    def __init__(self, pool: Lanes | Inline, jobs: list[Future[None] | Ready],
                 max_ahead: int) -> None:
        self.pool = pool
        self.max_ahead = max_ahead
        self.jobs = jobs
        self.ahead: deque[tuple[Future[None] | Ready, int]] = deque()  # not known done
        self.held = 0  # bytes of their contents
        self.batch: list[tuple[Callable[..., None], tuple[object, ...]]] = []
        self.size = 0
        self.where = b""

    def add(self, target: bytes, size: int, fn: Callable[..., None], *args: object) -> None:
        where = target.rpartition(b"/")[0]
        if self.batch and (where != self.where or len(self.batch) >= _BATCH
                           or self.size >= _BATCH_BYTES):
            self.flush()
        self.where = where
        self.batch.append((fn, args))
        self.size += size

    def flush(self) -> None:
        if not self.batch:
            return
        while self.ahead and (self.ahead[0][0].done() or self.held > self.max_ahead):
            done, size = self.ahead.popleft()
            done.result()  # contents in memory are bounded by what is written
            self.held -= size
        # Lanes pick a writer by the first argument's directory: a batch's own
        job = self.pool.submit(_run_batch, self.where + b"/", self.batch)
        self.jobs.append(job)
        self.ahead.append((job, self.size))
        self.held += self.size
        self.batch, self.size = [], 0


def _run_batch(_where: bytes, batch: list[tuple[Callable[..., None], tuple[object, ...]]]
               ) -> None:
    for fn, args in batch:
        fn(*args)
