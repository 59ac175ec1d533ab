"""Live changes: a watchdog observer on the upper dir (overlay) or rootfs (vfs) turns
events into debounced "these paths may have changed" notices; only those paths are
re-evaluated against the base layer.

The container's base is watched too: when another process commits (or resets) the
container, refs/containers/<id> moves while the upper dir stays as it is, so every
known path is re-evaluated against the new base.

Hardlink groups are evaluated per notice, so a link field whose group spans paths
of different notices can lag until the next full `status`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import Conflict
from layerctl.store.diff import Change

from .drivers import driver_for
from .state import Container, load
from .worktree import pending

if TYPE_CHECKING:
    from watchdog.events import FileSystemEvent

    from layerctl.store.repo import Store

Update = list[tuple[bytes, Change | None]]  # (path, its change now, or None: clean)
DEBOUNCE = 0.2
BASE_CHECK = 1.0  # seconds: a moved base is also noticed without a refs event (packed refs)


class ChangeWatcher:
    """Calls `on_update(updates)` with the paths whose status changed."""

    def __init__(
        self,
        store: Store,
        container: Container,
        on_update: Callable[[Update], None],
        initial: list[Change] | None = None,
        debounce: float = DEBOUNCE,
    ) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        self.store = store
        self.container = container
        self.on_update = on_update
        self.debounce = debounce
        self.top = driver_for(container).top(store, container)
        self._top_b = os.fsencode(self.top)
        self.known: dict[bytes, Change] = {c.path: c for c in (initial or [])}
        self._pending: set[bytes] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._base = store.ref(container.ref)
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                for attr in ("src_path", "dest_path"):
                    path = getattr(event, attr, None)
                    if path:
                        watcher._note(os.fsencode(path))

        class RefHandler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                watcher._wake.set()  # poll() compares the base

        self._observer = Observer()
        self._observer.schedule(Handler(), self.top, recursive=True)
        refs = os.path.join(store.root, "refs", "containers")
        if os.path.isdir(refs):
            self._observer.schedule(RefHandler(), refs, recursive=False)

    def _note(self, real: bytes) -> None:
        if real == self._top_b or not real.startswith(self._top_b + b"/"):
            return
        rel = real[len(self._top_b) + 1:]
        with self._lock:
            self._pending.add(rel)
        self._wake.set()

    def start(self) -> None:
        if not self._observer.is_alive():
            self._observer.start()

    def begin(self, read: Callable[[], list[Change]]) -> list[Change]:
        """Start noticing writes, then read the starting status with `read()` and return
        it. In this order a write between the two is noticed and re-evaluated; read
        first and started after, such a write was never reported."""
        self.start()
        try:
            initial = read()
        except BaseException:
            self.stop()
            raise
        faults.point("watch.initial-read")
        self.known = {c.path: c for c in initial}
        return initial

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._observer.stop()
        self._observer.join(timeout=5)

    def poll(self) -> Update:
        """Re-evaluate the paths noticed so far; returns (and reports) what changed."""
        base = self.store.ref(self.container.ref)
        if base != self._base:
            return self._rebase(base)
        with self._lock:
            paths, self._pending = self._pending, set()
        if not paths:
            return []
        # A path under a noticed one may have changed with it (a directory moved or removed).
        noticed = set(paths)
        noticed.update(p for p in self.known
                       if any(p.startswith(q + b"/") for q in paths))
        try:
            result = pending(self.store, self.container, tuple(sorted(noticed)))
        except Conflict:
            # A path kept changing while read (a busy container): look again at the
            # next event or tick, never die.
            with self._lock:
                self._pending.update(paths)
            self._wake.set()
            return []
        now = {c.path: c for c in result.changes}
        updates: Update = []
        for path in sorted(noticed | now.keys()):
            before, after = self.known.get(path), now.get(path)
            if after is None and path not in noticed:
                continue
            if before != after:
                updates.append((path, after))
                if after is None:
                    self.known.pop(path, None)
                else:
                    self.known[path] = after
        if updates:
            self.on_update(updates)
        return updates

    def _rebase(self, base: str | None) -> Update:
        """The base moved: re-evaluate everything against it (a full status)."""
        with self._lock:
            self._pending = set()
        self.container = load(self.store, self.container.id)  # reset may change lower
        self.store.landed()  # the new layer's objects came in another process's pack
        now = {c.path: c for c in pending(self.store, self.container).changes}
        self._base = base
        updates: Update = [(path, now.get(path)) for path in sorted(self.known.keys() | now.keys())
                           if self.known.get(path) != now.get(path)]
        self.known = now
        if updates:
            self.on_update(updates)
        return updates

    def run_forever(self) -> None:
        self.start()
        while not self._stop.is_set():
            woke = self._wake.wait(BASE_CHECK)
            self._wake.clear()
            if self._stop.is_set():
                break
            if woke:
                time.sleep(self.debounce)  # let a burst of events settle
            elif self.store.ref(self.container.ref) == self._base:
                continue  # the timed check: nothing moved, poll() (and its locks) not needed
            self.poll()
