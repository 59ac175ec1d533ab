"""Worker results reach the UI thread only while their widget is still shown.

A store read in a worker thread can finish after its screen was dismissed or the
app began to exit; delivering it then raises NoMatches from a query, which Textual
reports as a failed worker. Every screen and widget that hands results from a
worker to the UI does it through `_ui`.
"""

from __future__ import annotations

from collections.abc import Callable


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
