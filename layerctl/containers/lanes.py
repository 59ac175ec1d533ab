"""The pools that write a layer dir's files (containers/layerbuild.py): `Lanes` for a
layer of many entries, `Inline` for a few (threads would cost more than they save).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future

    from layerctl.store.blobread import Ready


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
