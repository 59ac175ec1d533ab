"""The log screen: `git log --stat` for the stack, newest first."""

from __future__ import annotations

from rich.padding import Padding
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, RichLog

from layerctl.errors import LayerctlError
from layerctl.tui.format import human_size, status_colour
from layerctl.tui.workers import WorkerCalls

STAT_LINES = 12  # per layer; the rest is summarised in the count line


class LogScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
        Binding("question_mark", "app.show_help", "Help"),
    ]

    def __init__(self, container: str | None, image: str | None, top: str | None) -> None:
        super().__init__()
        self.container = container
        self.image = image
        self.top = top

    def compose(self) -> ComposeResult:
        yield Header()
        log = RichLog(id="log", classes="pane", wrap=False, markup=False, highlight=False)
        log.border_title = "Log"
        yield log
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "log"
        self.query_one(RichLog).focus()
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        from layerctl.containers.state import base, resolve
        from layerctl.images import chain, layer_sizes
        from layerctl.images import resolve as resolve_layer
        from layerctl.insight.packages import Packages, summary_line
        from layerctl.patch import stat_summary
        from layerctl.store.diff import diff
        from layerctl.store.layers import read_layer

        store = self.app.store
        try:
            with self.app.store_lock:
                top = self.top
                if top is None and self.container:
                    top = base(store, resolve(store, self.container))
                elif top is None and self.image:
                    top = resolve_layer(store, self.image)
                layers = chain(store, top) if top else []
                sizes = dict(zip((layer.id for layer in layers), layer_sizes(store, layers),
                                 strict=True))
        except LayerctlError as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        pkgs = Packages(store)
        for layer in reversed(layers):
            with self.app.store_lock:
                parent = read_layer(store, layer.parent).root if layer.parent else None
                changes = list(diff(store, parent, layer.root))
                size = sizes[layer.id]
                packages = pkgs.of_layer(layer)
            lines, summary = stat_summary(changes)
            if packages:
                summary += "\n" + summary_line(packages)
            self._ui(self._write_layer, layer, size, changes, lines, summary)
        for warning in pkgs.warnings:
            self._ui(self.notify, warning, severity="warning", markup=False)

    def _write_layer(self, layer: object, size: int, changes: list, lines: list[str],
                     summary: str) -> None:
        log = self.query_one(RichLog)
        v = self.app.theme_variables
        log.write(Text(f"layer {self.app.short_id(layer.id)}", style=f"bold {v.get('accent', '')}"))
        log.write(f"Author: {layer.author}")
        log.write(f"Date:   {layer.created.strftime('%a %b %d %H:%M:%S %Y %z')}")
        log.write(f"Size:   {human_size(size)}")
        log.write("")
        # Padding, not leading spaces: RichLog drops a line's leading whitespace.
        for line in (layer.message or "(no message)").splitlines():
            log.write(Padding(Text(line), (0, 0, 0, 4)))
        log.write("")
        for ch, line in list(zip(changes, lines, strict=True))[:STAT_LINES]:
            log.write(Padding(Text(line, style=status_colour(v, ch.status)), (0, 0, 0, 1)))
        if len(lines) > STAT_LINES:
            log.write(Padding(Text(f"… {len(lines) - STAT_LINES} more", style="italic"),
                              (0, 0, 0, 1)))
        log.write(Padding(Text(summary, style="bold"), (0, 0, 0, 1)))
        log.write("")
