"""The images screen: every tag, with open, tag, create-container and remove."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from layerctl.errors import LayerctlError
from layerctl.tui.format import ago, human_size
from layerctl.tui.screens.commit import check_tag
from layerctl.tui.screens.dialogs import ConfirmDialog, PromptDialog
from layerctl.tui.workers import WorkerCalls


class ImagesScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("t", "tag", "Tag"),
        Binding("n", "create", "New container"),
        Binding("x", "remove", "Remove tag"),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("question_mark", "app.show_help", "Help"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(cursor_type="row", id="images", classes="pane")
        table.border_title = "Images"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "images"
        table = self.query_one(DataTable)
        for label in ("Repository", "Tag", "Layer ID", "Layers", "Created", "Size"):
            table.add_column(label, key=label.lower())
        table.focus()
        self.load()

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

    def _current(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_open(self) -> None:
        name = self._current()
        if name:
            self.app.open_target(image=name)

    def action_tag(self) -> None:
        name = self._current()
        if not name:
            return

        def tagged(new: str | None) -> None:
            if new:
                self._run("tag", name, new)

        self.app.push_screen(PromptDialog(f"New name:tag for {name}", placeholder="myapp:1.0",
                                          check=lambda v: check_tag(v) or (
                                              None if v else "give a name")), tagged)

    def action_create(self) -> None:
        name = self._current()
        if not name:
            return

        def created(container: str | None) -> None:
            if container is not None:
                self._run("create", name, container)

        self.app.push_screen(PromptDialog(f"New container from {name}: its name",
                                          placeholder="(empty: a generated name)"), created)

    def action_remove(self) -> None:
        name = self._current()
        if not name:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run("remove", name, "")

        self.app.push_screen(ConfirmDialog(
            f"Remove the tag {name}?\n\nLayers stay in the store while something else "
            "(another tag, a container) uses them.", "Remove"), answered)

    @work(thread=True, group="images-action")
    def _run(self, what: str, name: str, arg: str) -> None:
        from layerctl.containers import api
        from layerctl.containers.state import remove_images
        from layerctl.images import parse_name, resolve, set_tag

        store = self.app.store
        try:
            with self.app.store_lock:
                if what == "tag":
                    set_tag(store, parse_name(arg), resolve(store, name))
                    done = f"Tagged {name} as {arg}"
                elif what == "remove":
                    remove_images(store, [parse_name(name)])
                    done = f"Removed {name}"
                else:
                    c, notice = api.create(store, name, name=arg or None)
                    done = f"Created container {c.name}" + (f" ({notice})" if notice else "")
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        self._ui(self.notify, done, markup=False)
        self.load()
