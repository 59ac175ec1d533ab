"""Layer blobs of a pull downloaded ahead of their apply, at most N at once.

Docker's model (`max-concurrent-downloads`, default 3): while one layer is
being applied, the next ones are already on the wire. Layers are applied in
order, each onto its parent's tree, so only the downloads run ahead:

- the layer the pull needs next and whose download has not started is
  streamed straight into the apply (as a one-layer pull always is);
- any other layer is downloaded by a thread of its own, with a registry
  client of its own (a requests session is not made to be shared), into a
  spool file beside the store's packs, its digest and size checked by the
  client as the last chunk arrives; the apply then reads the spool.

At most `limit` downloads run at once (a streamed one counts), started in
layer order. A failed download is raised when the pull reaches that layer,
so the layers below it still land (a retry resumes from them). Spool files
are temporary files of this process (debris.temp_prefix): removed on close,
and by the next pack writer if the process was killed.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from layerctl import faults
from layerctl.errors import BadInput
from layerctl.store import debris

DEFAULT_LIMIT = 3
_READ = 1 << 20
_WAIT = 0.1  # how often a waiting apply reports the bytes of a download ahead


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise BadInput(f"--max-concurrent-downloads must be 1 or more, not {limit}")
    return limit


@dataclass(eq=False)
class _Task:
    blob: object  # image.LayerBlob-like: digest, size, media_type
    what: str
    state: str = "queued"  # queued -> running -> done | failed; or taken (streamed)
    path: str | None = None
    done_bytes: int = 0
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class Downloads:
    """The blobs of `layers` [(blob, what)], fetched ahead of the apply."""

    def __init__(
        self,
        new_client: Callable[[], object],
        spool_dir: str,
        layers: list[tuple[object, str]],
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._new_client = new_client
        self._spool_dir = spool_dir
        self._tasks = [_Task(blob, what) for blob, what in layers]
        self._limit = check_limit(limit)
        self._running = 0
        self._next = 0  # the first task never started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[object] = []  # idle clients, reused by later downloads
        self._all_clients: list[object] = []

    # -- scheduling ------------------------------------------------------------

    def start(self) -> None:
        """Start the downloads ahead; the first layer is left to the apply to stream."""
        with self._lock:
            if self._tasks:
                self._tasks[0].state = "taken"
                self._running, self._next = 1, 1  # its slot, held until take(0) ends it
            self._pump()

    def _pump(self) -> None:
        """Start queued downloads in layer order while slots are free (lock held)."""
        while self._running < self._limit and self._next < len(self._tasks):
            task = self._tasks[self._next]
            self._next += 1
            if task.state != "queued":
                continue  # taken by the apply, to be streamed
            task.state = "running"
            self._running += 1
            short = task.what.rsplit(" ", 1)[-1]
            thread = threading.Thread(
                target=self._download, args=(task,), name=f"download {short}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _release(self) -> None:
        with self._lock:
            self._running -= 1
            if not self._stop.is_set():
                self._pump()

    # -- a download ahead --------------------------------------------------------

    def _client(self) -> object:
        with self._lock:
            if self._clients:
                return self._clients.pop()
        client = self._new_client()
        with self._lock:
            self._all_clients.append(client)
        return client

    def _download(self, task: _Task) -> None:
        client = None
        fd = -1
        try:
            faults.point("pull.download-blob")
            client = self._client()
            with self._lock:  # close() removes every spool file made before it
                if self._stop.is_set():
                    return
                fd, task.path = tempfile.mkstemp(
                    prefix=debris.temp_prefix("spool"), dir=self._spool_dir
                )
            with os.fdopen(fd, "wb") as out:
                fd = -1
                for chunk in client.blob_chunks(task.blob.digest, task.blob.size, task.what):
                    if self._stop.is_set():
                        return
                    out.write(chunk)
                    task.done_bytes += len(chunk)
            task.state = "done"
        except BaseException as e:  # handed to the apply when it reaches this layer
            task.error = e
            task.state = "failed"
        finally:
            if fd >= 0:
                os.close(fd)
            if client is not None:
                with self._lock:
                    self._clients.append(client)
            faults.point("pull.download-ended")
            task.finished.set()
            self._release()

    # -- the apply's side ---------------------------------------------------------

    def take(self, index: int, stream: Callable[[Callable[[], None]], object],
             waiting: Callable[[int], None]) -> tuple[object, str]:
        """Layer `index`'s blob: ("stream", stream(release)) when it is to be streamed
        (release() frees its slot once the stream has read the blob), else
        ("spool", path) once its download ahead is complete; a failed download
        raises its error here. `waiting(bytes)` reports a download being waited for."""
        task = self._tasks[index]
        with self._lock:
            streamed = task.state in ("queued", "taken")
            if task.state == "queued":  # not started: this stream takes a slot
                task.state = "taken"
                self._running += 1
        if streamed:
            released = threading.Event()

            def release() -> None:
                if not released.is_set():
                    released.set()
                    self._release()

            try:
                return "stream", stream(release)
            except BaseException:
                release()
                raise
        while not task.finished.wait(_WAIT):
            waiting(task.done_bytes)
        if task.error is not None:
            raise task.error
        return "spool", task.path

    def done_with(self, index: int) -> None:
        """The apply has read layer `index`: its spool file goes."""
        _unlink(self._tasks[index].path)

    def close(self) -> None:
        """Stop the downloads still running, remove every spool file, close the clients."""
        with self._lock:
            self._stop.set()
        # a download stalled in a read ends at the client's timeout; its file is gone
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for task in self._tasks:
            _unlink(task.path)
        for client in self._all_clients:
            client.close()


def spool_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(_READ):
            yield chunk


def _unlink(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
