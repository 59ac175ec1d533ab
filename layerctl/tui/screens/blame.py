"""The blame screen (`b` in Files): every event of one path along the stack, from
layerctl.insight.blame (added, content, metadata, type change, deleted and how), oldest first,
the container's pending change last. `enter` goes back to the main screen with that
layer selected and the path highlighted in Files."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from layerctl.tui.format import author_short, human_size
from layerctl.tui.workers import WorkerCalls
from layerctl.words import one_line, path_text


def what_happened(event: object) -> str:
    """'deleted (parent removed: /srv/app)', 'metadata (mode 0644→0600)'."""
    from layerctl.insight.blame import BY_WHITEOUT, EVENT_WORDS, REMOVED

    word = EVENT_WORDS[event.change]
    if event.change == REMOVED:
        where = path_text(event.where) if event.where and event.mechanism != BY_WHITEOUT else ""
        how = event.mechanism + (f": {where}" if where else "")
        return f"{word} ({how})" if how else word
    return f"{word} ({', '.join(event.details)})" if event.details else word


class BlameScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
        # priority: before the table's own enter (which the footer would not show)
        Binding("enter", "jump", "Go to layer", priority=True),
        Binding("question_mark", "app.show_help", "Help"),
    ]

    def __init__(self, container: str | None, top: str, path: bytes) -> None:
        super().__init__()
        self.container = container
        self.top = top
        self.path = path
        self.history = None  # blame.PathHistory once loaded

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(id="blame", cursor_type="row", classes="pane")
        table.border_title = f"Blame · {path_text(self.path)}"
        yield table
        yield Footer()

    @property
    def table(self) -> DataTable:
        return self.query_one("#blame", DataTable)

    def on_mount(self) -> None:
        self.sub_title = "blame"
        table = self.table
        for label, key in (("Layer", "layer"), ("What happened", "what"), ("Author", "author"),
                           ("Date", "date"), ("Size", "size"), ("Message", "message")):
            table.add_column(label, key=key)
        table.focus()
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        from layerctl.images import chain as layer_chain
        from layerctl.insight import blame

        def history(store: object) -> object:
            chain = layer_chain(store, self.top)
            pend = None
            if self.container:
                from layerctl.containers.state import resolve

                pend = blame.pending_of(store, resolve(store, self.container), [self.path])
            return blame.path_history(store, chain, self.path, pend)[0]

        self._read(history, self._show)

    def _show(self, hist: object) -> None:
        self.history = hist
        table = self.table
        table.clear()
        for i, e in enumerate(hist.events):
            layer = e.step.layer
            shown_size = (human_size(e.meta.size) if e.meta is not None and e.meta.kind == "-"
                          else "")
            table.add_row(
                Text(self.app.short_id(layer.id) if layer else e.step.id, style="bold"),
                Text(what_happened(e)),
                Text(one_line(author_short(layer.author_name)) if layer else ""),
                Text(layer.created_iso[:10] if layer else ""),
                Text(shown_size, justify="right"),
                Text(one_line(layer.summary or layer.created_by) if layer else "pending changes",
                     no_wrap=True, overflow="ellipsis"),
                key=str(i),
            )
        n = len(hist.events)
        table.border_subtitle = ("never present in this stack" if not n else
                                 f"{n} event{'s' if n != 1 else ''}"
                                 + ("" if hist.exists else " · deleted now"))
        if n:
            table.move_cursor(row=n - 1)

    def action_jump(self) -> None:
        table = self.table
        if self.history is None or not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        layer = self.history.events[int(key)].step.layer
        self.dismiss((layer.id if layer else None, self.path))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_jump()
