"""The images screen: every tag, with open, tag, create-container and remove."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.widgets import DataTable

from layerctl.errors import LayerctlError
from layerctl.tui.format import ago, human_size
from layerctl.tui.screens.commit import check_tag
from layerctl.tui.screens.dialogs import PromptDialog
from layerctl.tui.screens.table import TableScreen


class ImagesScreen(TableScreen):
    TABLE_ID = "images"
    COLUMNS = ("Repository", "Tag", "Layer ID", "Layers", "Created", "Size")
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("t", "tag", "Tag"),
        Binding("n", "create", "New container"),
        Binding("x", "remove", "Remove tag"),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("question_mark", "app.show_help", "Help"),
    ]

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        from layerctl.images import chain, image_size, list_images

        rows = []
        with self.app.store_lock:
            for name, layer_id in list_images(self.app.store):
                try:
                    layers = chain(self.app.store, layer_id)
                    size = image_size(self.app.store, layers)
                except LayerctlError:
                    continue
                rows.append((name, layer_id, layers, size))
        self._ui(self._show, rows)

    def _show(self, rows: list) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for name, layer_id, layers, size in rows:
            table.add_row(name.repository, name.tag, Text(self.app.short_id(layer_id), "bold"),
                          str(len(layers)), ago(layers[-1].author_time, self.app.clock),
                          human_size(size), key=str(name))
        table.border_subtitle = f"{len(rows)} image{'s' if len(rows) != 1 else ''}"

    def action_open(self) -> None:
        name = self._current()
        if name:
            self.app.open_target(image=name)

    def action_tag(self) -> None:
        name = self._current()
        if not name:
            return

        def tagged(new: str | None) -> None:
            if not new:
                return

            def tag(store: object) -> str:
                from layerctl.images import parse_name, resolve, set_tag

                set_tag(store, parse_name(new), resolve(store, name))
                return f"Tagged {name} as {new}"

            self._act(tag, self.load)

        self.app.push_screen(PromptDialog(f"New name:tag for {name}", placeholder="myapp:1.0",
                                          check=lambda v: check_tag(v) or (
                                              None if v else "give a name")), tagged)

    def action_create(self) -> None:
        name = self._current()
        if not name:
            return

        def created(container: str | None) -> None:
            if container is None:
                return

            def create(store: object) -> str:
                from layerctl.containers import api

                c, notice = api.create(store, name, name=container or None)
                return f"Created container {c.name}" + (f" ({notice})" if notice else "")

            self._act(create, self.load)

        self.app.push_screen(PromptDialog(f"New container from {name}: its name",
                                          placeholder="(empty: a generated name)"), created)

    def action_remove(self) -> None:
        name = self._current()
        if not name:
            return

        def remove(store: object) -> str:
            from layerctl.containers.state import remove_images
            from layerctl.images import parse_name

            remove_images(store, [parse_name(name)])
            return f"Removed {name}"

        self._confirm(f"Remove the tag {name}?\n\nLayers stay in the store while something "
                      "else (another tag, a container) uses them.", "Remove",
                      lambda: self._act(remove, self.load))
