"""Worker results reach the UI thread only while their widget is still shown.

A store read in a worker thread can finish after its screen was dismissed or the
app began to exit; delivering it then raises NoMatches from a query, which Textual
reports as a failed worker. Every screen and widget that hands results from a
worker to the UI does it through `_ui`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class WorkerCalls:
    """Mixin for Textual widgets and screens."""

    def _ui(self, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        """From a worker: run `fn(*args, **kwargs)` on the UI thread, unless this
        widget has been taken down meanwhile."""
        self.app.call_from_thread(self._if_shown, fn, args, kwargs)  # type: ignore[attr-defined]

    def _if_shown(self, fn: Callable[..., object], args: tuple, kwargs: dict) -> None:
        from textual.css.query import NoMatches

        if not self.is_attached:  # type: ignore[attr-defined]
            return
        try:
            fn(*args, **kwargs)
        except NoMatches:
            pass  # its widgets went while the call was queued

    def _read(self, fn: Callable[[Any], Any], show: Callable[[Any], object]) -> None:
        """From a worker: `fn(store)` under the app's store lock, then `show(result)` on
        the UI thread; a failure is one error notification instead."""
        from layerctl.errors import LayerctlError

        app = self.app  # type: ignore[attr-defined]
        try:
            with app.store_lock:
                result = fn(app.store)
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)  # type: ignore[attr-defined]
            return
        self._ui(show, result)
