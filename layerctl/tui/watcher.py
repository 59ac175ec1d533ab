"""The core's change watcher as the TUI runs it: in its own thread, under the app's
store lock (dulwich pack readers are not thread-safe), reporting a failure once."""

from __future__ import annotations

import threading

from layerctl.containers.watch import ChangeWatcher
from layerctl.errors import LayerctlError


class LockedWatcher(ChangeWatcher):
    """The core's watcher, re-evaluating under the app's store lock; a failure (the
    container removed elsewhere, say) is reported once, not raised in its thread."""

    def __init__(self, lock: threading.RLock, on_error: object, *args: object,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.lock = lock
        self.on_error = on_error
        self.failed = False

    def poll(self):  # noqa: ANN201 - the core's Update list
        try:
            with self.lock:
                return super().poll()
        except (LayerctlError, OSError) as e:
            if not self.failed:
                self.failed = True
                self.on_error(e)
            return []
