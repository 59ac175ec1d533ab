"""The waste screen (`w`): layerctl.insight.waste's report for the main screen's image or
container: efficiency, shipped / visible / reclaimable bytes, and the inefficient paths,
sortable. `enter` on a path goes back to the main screen with the layer that wasted it
selected and the path highlighted in Files."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from layerctl.insight.history import UNCOMMITTED
from layerctl.tui.format import human_size
from layerctl.tui.workers import WorkerCalls
from layerctl.words import one_line, path_text

BY_SIZE, BY_PATH, BY_CLASS = "size", "path", "class"


def figures(report: object) -> list[tuple[str, str]]:
    """(label, value) of the summary line: exact byte counts beside the short ones."""
    ratio = report.user_ratio
    user = "∞ (user layers ship nothing)" if ratio == float("inf") else f"{ratio * 100:.4f} %"
    base = report.layers[report.base_index]
    return [
        ("Efficiency", f"{report.efficiency * 100:.4f} %"),
        ("Total", _bytes(report.total)),
        ("Visible", _bytes(report.visible)),
        ("Reclaimable", _bytes(report.reclaimable)),
        ("User wasted", f"{user} (base {report.base_name}: layers 0-{base.index})"),
    ]


def _bytes(n: int) -> str:
    return f"{human_size(n)} ({n:,} bytes)"


class WasteScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
        # priority: before the table's own enter (which the footer would not show)
        Binding("enter", "jump", "Go to layer and path", priority=True),
        Binding("s", "sort('size')", "Sort by size"),
        Binding("p", "sort('path')", "Sort by path"),
        Binding("k", "sort('class')", "Sort by class"),
        Binding("question_mark", "app.show_help", "Help"),
    ]

    def __init__(self, container: str | None, image: str | None) -> None:
        super().__init__()
        self.container = container
        self.image = image
        self.report = None
        self.rows: list = []  # waste.PathRow, as the report gives them (most wasted first)
        self.sort_by = BY_SIZE
        self.reverse = False

    def compose(self) -> ComposeResult:
        yield Header()
        summary = Static(id="waste-summary", classes="pane")
        summary.border_title = "Waste"
        yield summary
        table = DataTable(id="waste", cursor_type="row", classes="pane")
        table.border_title = "Inefficient paths"
        yield table
        yield Footer()

    @property
    def table(self) -> DataTable:
        return self.query_one("#waste", DataTable)

    def on_mount(self) -> None:
        self.sub_title = "waste"
        table = self.table
        table.add_column("Wasted", key="wasted")
        table.add_column("Class", key="class")
        table.add_column("Wasted by layer", key="culprit", width=40)
        table.add_column("Count", key="count")
        table.add_column("Path", key="path")
        self.query_one("#waste-summary", Static).update(Text("analysing…", style="italic"))
        table.focus()
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        from layerctl.insight.history import container_target
        from layerctl.insight.waste import analyze, base_of

        def report(store: object) -> object:
            if self.container:
                from layerctl.containers.state import resolve

                target = container_target(store, resolve(store, self.container))
            else:
                from layerctl.insight.history import resolve_target

                target = resolve_target(store, self.image)
            base_index, base_name = base_of(store, target, None)
            return analyze(store, target, base_index, base_name)

        self._read(report, self._show)

    def _show(self, report: object) -> None:
        self.report = report
        self.rows = [r for r in report.by_path(collapse=True) if r.wasted > 0]
        text = Text()
        shown = figures(report)
        for i, (label, value) in enumerate(shown):
            gap = "" if i == 0 else "\n" if i == len(shown) - 1 else "   "
            text.append(f"{gap}{label}: ", style="bold")
            text.append(value)
        self.query_one("#waste-summary", Static).update(text)
        self.table.border_subtitle = f"{len(self.rows)} path{'s' if len(self.rows) != 1 else ''}"
        self._fill()

    def _sorted(self) -> list[int]:
        rows = self.rows
        key = {
            BY_SIZE: lambda i: (-rows[i].wasted, rows[i].path),
            BY_PATH: lambda i: (rows[i].path,),
            BY_CLASS: lambda i: (rows[i].cls, -rows[i].wasted, rows[i].path),
        }[self.sort_by]
        return sorted(range(len(rows)), key=key, reverse=self.reverse)

    def _fill(self) -> None:
        table = self.table
        keep = self._cursor_key()
        table.clear()
        layers = self.report.layers
        for i in self._sorted():
            row = self.rows[i]
            facts = layers[row.culprit]
            shown = path_text(row.path) + (f"/ (directory, {row.files} files)" if row.files
                                           else "")
            culprit = f"{facts.index} {self._short(facts.id)} {one_line(facts.summary)}"
            table.add_row(
                Text(human_size(row.wasted), justify="right"),
                Text(row.cls),
                Text(culprit, no_wrap=True, overflow="ellipsis"),
                Text(str(row.count), justify="right"),
                Text(shown),
                key=str(i),
            )
        order = "descending" if (self.sort_by == BY_SIZE) != self.reverse else "ascending"
        table.border_title = f"Inefficient paths · by {self.sort_by} ({order})"
        if keep is not None:
            table.move_cursor(row=table.get_row_index(keep))

    def _short(self, layer_id: str) -> str:
        return layer_id if layer_id == UNCOMMITTED else self.app.short_id(layer_id)

    def _cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def selected_row(self) -> object | None:
        """The highlighted waste.PathRow (None before the report is in)."""
        key = self._cursor_key()
        return None if key is None else self.rows[int(key)]

    def action_sort(self, by: str) -> None:
        """Sort by `by`; the same key again reverses the order."""
        if not self.rows:
            return
        self.reverse = not self.reverse if by == self.sort_by else False
        self.sort_by = by
        self._fill()

    def action_jump(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        layer_id = self.report.layers[row.culprit].id
        self.dismiss((None if layer_id == UNCOMMITTED else layer_id, row.path))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_jump()
