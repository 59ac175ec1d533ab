"""The Changes pane: the container's pending changes, live, with staging.

A DataTable keeps 100k rows scrollable (it renders only the visible lines).
Staging is a selection of paths for the next commit; nothing staged means
the commit takes everything.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from layerctl.patch import path_text
from layerctl.store.diff import Change
from layerctl.tui.format import status_colour, status_text
from layerctl.tui.messages import ChangeHighlighted, StagingChanged

STAGED_MARK, UNSTAGED_MARK = "●", "·"
SORT_LIMIT = 20_000  # keep rows in path order on live updates while sorting stays cheap


class DiscardRequested(Message):
    """The user asked to discard the change at `path` (the screen confirms it)."""

    def __init__(self, path: bytes) -> None:
        super().__init__()
        self.path = path


class ChangeList(DataTable):
    BINDINGS = [
        Binding("space", "toggle_stage", "Stage/unstage"),
        Binding("a", "stage_all", "Stage all"),
        Binding("d", "discard", "Discard"),
    ]

    def __init__(self) -> None:
        super().__init__(cursor_type="row", id="changes", classes="pane")
        self.changes: dict[bytes, Change] = {}
        self.staged: set[bytes] = set()
        self.border_title = "Changes"

    def on_mount(self) -> None:
        self.add_column("", key="staged", width=1)
        self.add_column("", key="status", width=1)
        self.add_column("Path", key="path")
        self.add_column("Details", key="details")
        self._retitle()

    # -- content ------------------------------------------------------------------

    def _variables(self) -> dict[str, str]:
        return self.app.theme_variables

    def _cells(self, ch: Change) -> tuple:
        v = self._variables()
        staged = ch.path in self.staged
        mark = Text(STAGED_MARK if staged else UNSTAGED_MARK,
                    style=status_colour(v, "staged") if staged else status_colour(v, "dim"))
        return (mark, status_text(v, ch.status),
                Text(path_text(ch.path), style=status_colour(v, ch.status)),
                Text(", ".join(ch.details()), style=status_colour(v, "dim")))

    def load(self, changes: list[Change]) -> None:
        """Replace every row (a full scan's result); staging of surviving paths is kept."""
        row = self.cursor_row
        self.clear()
        self.changes = {ch.path: ch for ch in changes}
        self.staged &= self.changes.keys()
        for ch in changes:
            self.add_row(*self._cells(ch), key=_key(ch.path))
        if changes:
            self.move_cursor(row=min(row, len(changes) - 1))
        self._retitle()

    def apply(self, updates: list[tuple[bytes, Change | None]]) -> None:
        """A watcher's updates: (path, change now or None when it is clean again)."""
        added = False
        for path, ch in updates:
            key = _key(path)
            if ch is None:
                if self.changes.pop(path, None) is not None:
                    self.remove_row(key)
                self.staged.discard(path)
            elif path in self.changes:
                self.changes[path] = ch
                for col, cell in zip(("staged", "status", "path", "details"), self._cells(ch),
                                     strict=True):
                    self.update_cell(key, col, cell)
            else:
                self.changes[path] = ch
                self.add_row(*self._cells(ch), key=key)
                added = True
        if added and self.row_count <= SORT_LIMIT:
            self.sort("path", key=lambda cell: cell.plain)
        self._retitle()

    def _retitle(self) -> None:
        counts = {"A": 0, "C": 0, "D": 0}
        for ch in self.changes.values():
            counts[ch.status] += 1
        v = self._variables() if self.is_mounted else {}
        parts = [f"[{status_colour(v, s)}]{s} {n}[/]" for s, n in counts.items()]
        self.border_title = "Changes  " + "  ".join(parts)
        total = len(self.changes)
        self.border_subtitle = (f"{len(self.staged)} of {total} staged" if self.staged
                                else f"{total} pending, none staged")
        self.post_message(StagingChanged(len(self.staged), total))

    # -- staging ----------------------------------------------------------------

    def current_path(self) -> bytes | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return _path(key)

    def set_staged(self, paths: set[bytes], staged: bool) -> None:
        for path in paths:
            if path not in self.changes:
                continue
            if staged:
                self.staged.add(path)
            else:
                self.staged.discard(path)
            self.update_cell(_key(path), "staged", self._cells(self.changes[path])[0])
        self._retitle()

    def action_toggle_stage(self) -> None:
        path = self.current_path()
        if path is None:
            return
        self.set_staged({path}, path not in self.staged)
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def action_stage_all(self) -> None:
        everything = set(self.changes)
        self.set_staged(everything, self.staged != everything)

    def action_discard(self) -> None:
        path = self.current_path()
        if path is not None:
            self.post_message(DiscardRequested(path))

    def staged_changes(self) -> list[Change]:
        return [ch for p, ch in self.changes.items() if p in self.staged]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(ChangeHighlighted(_path(event.row_key.value)))


def _key(path: bytes) -> str:
    # Row keys are str; surrogateescape keeps any byte name round-tripping.
    return path.decode("utf-8", "surrogateescape")


def _path(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")
