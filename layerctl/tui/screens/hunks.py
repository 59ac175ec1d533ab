"""Hunk staging in the UI (`commit --patch`): the hunks of one changed text file, each
toggled with space, committed with ctrl+s; the hunks left out stay pending in the
container. The patches are layerctl.patch's (containers/hunks.py), as in the CLI."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from layerctl.errors import LayerctlError
from layerctl.tui.workers import WorkerCalls
from layerctl.words import path_text


class HunkScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("space", "toggle", "Take / leave the hunk"),
        Binding("ctrl+s", "commit", "Commit the hunks taken"),
        Binding("escape", "app.pop_screen", "Cancel"),
    ]

    def __init__(self, container: str, path: bytes, author: str = "") -> None:
        super().__init__()
        self.container = container
        self.path = path
        self.author = author
        self.patch = None  # containers.hunks' FilePatch of the file
        self.taken: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Input(placeholder="Layer message", id="hunk-message")
            table = DataTable(cursor_type="row", id="hunk-list", classes="pane")
            table.border_title = f"Hunks of {path_text(self.path)}"
            yield table
            yield Static("", id="hunk-preview", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "commit hunks"
        table = self.query_one(DataTable)
        table.add_column("Take", key="take")
        table.add_column("Hunk", key="hunk")
        table.add_column("Lines", key="lines")
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        from layerctl.containers import api
        from layerctl.containers.hunks import patches, splittable

        try:
            with self.app.store_lock:
                store = self.app.store
                p = api.pending(store, api.resolve(store, self.container))
                found = [fp for fp in patches(store, p) if fp.change.path == self.path]
        except (LayerctlError, OSError) as e:
            self._ui(self._refuse, str(e))
            return
        if not found or not splittable(found[0].change) or not found[0].hunks:
            self._ui(self._refuse, f"{path_text(self.path)}: only a changed text file "
                                   "splits into hunks; stage it whole in Changes")
            return
        self._ui(self._show, found[0])

    def _refuse(self, why: str) -> None:
        self.notify(why, severity="warning", markup=False)
        self.app.pop_screen()

    def _show(self, fp: object) -> None:
        self.patch = fp
        table = self.query_one(DataTable)
        for k, h in enumerate(fp.hunks):
            lines = fp.hunk_lines(h)
            plus = sum(1 for ln in lines[1:] if ln.startswith("+"))
            minus = sum(1 for ln in lines[1:] if ln.startswith("-"))
            table.add_row(" ", h.header, f"+{plus} -{minus}", key=str(k))
        table.focus()
        self._preview(0)

    def _preview(self, k: int) -> None:
        if self.patch is None or not 0 <= k < len(self.patch.hunks):
            return
        text = Text()
        for line in self.patch.hunk_lines(self.patch.hunks[k]):
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            text.append(line + "\n", style)
        self.query_one("#hunk-preview", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview(event.cursor_row)

    def action_toggle(self) -> None:
        table = self.query_one(DataTable)
        if self.patch is None or not table.row_count:
            return
        k = table.cursor_row
        self.taken ^= {k}
        table.update_cell(str(k), "take", "✓" if k in self.taken else " ")

    def action_commit(self) -> None:
        if self.patch is None:
            return
        if not self.taken:
            self.notify("Take at least one hunk (space).", severity="warning")
            return
        message = self.query_one("#hunk-message", Input).value.strip()
        if not message:
            self.notify("Give the layer a message.", severity="warning")
            self.query_one("#hunk-message", Input).focus()
            return
        self._commit(message, sorted(self.taken))

    @work(thread=True, group="hunk-commit")
    def _commit(self, message: str, taken: list[int]) -> None:
        from layerctl.containers import api
        from layerctl.containers.hunks import Choice

        def choose(items: list) -> list:
            return [Choice(fp, [fp.hunks[k] for k in taken])
                    for fp in items if fp.change.path == self.path]

        try:
            with self.app.store_lock:
                result = api.commit(self.app.store, self.container, message=message,
                                    author=self.author or None, choose=choose)
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        self._ui(self.notify, f"Committed layer {result.layer_id[:12]}: "
                              f"{len(taken)} of {len(self.patch.hunks)} hunks of "
                              f"{path_text(self.path)}", markup=False)
        self._ui(self.app.back_to_main)
