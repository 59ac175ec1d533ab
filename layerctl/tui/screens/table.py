"""A screen that is one table of store objects (images, containers) with actions on the
row under the cursor; each action runs on a worker under the store lock and reports
in a notification."""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from layerctl.tui.screens.dialogs import ConfirmDialog
from layerctl.tui.workers import WorkerCalls


class TableScreen(WorkerCalls, Screen):
    TABLE_ID = ""  # also the sub-title and, capitalised, the border title
    COLUMNS: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(cursor_type="row", id=self.TABLE_ID, classes="pane")
        table.border_title = self.TABLE_ID.capitalize()
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.TABLE_ID
        table = self.query_one(DataTable)
        for label in self.COLUMNS:
            table.add_column(label, key=label.lower())
        table.focus()
        self.load()

    def load(self) -> None:
        raise NotImplementedError

    def _current(self) -> str | None:
        """The key of the row under the cursor."""
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _confirm(self, text: str, button: str, then: Callable[[], None]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmDialog(text, button), answered)

    @work(thread=True, group="table-action")
    def _act(self, action: Callable[[object], str], after: Callable[[], None]) -> None:
        """Run `action(store)` under the store lock; notify what it returns, or its
        error; then `after()` on the UI thread."""

        def done(message: str) -> None:
            self.notify(message, markup=False)
            after()

        self._read(action, done)
