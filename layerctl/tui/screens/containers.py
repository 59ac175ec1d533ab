"""The containers screen: create, open, remove, reset to a layer (with a confirm)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from layerctl.errors import LayerctlError
from layerctl.tui.format import ago
from layerctl.tui.screens.dialogs import ConfirmDialog, PromptDialog
from layerctl.tui.workers import WorkerCalls


class ContainersScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "create", "Create"),
        Binding("x", "remove", "Remove"),
        Binding("R", "reset", "Reset to layer"),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("question_mark", "app.show_help", "Help"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        table = DataTable(cursor_type="row", id="containers", classes="pane")
        table.border_title = "Containers"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "containers"
        table = self.query_one(DataTable)
        for label in ("Name", "Container ID", "Image", "Base layer", "Driver", "Created"):
            table.add_column(label, key=label.lower())
        table.focus()
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        from layerctl.containers.state import list_containers

        with self.app.store_lock:
            rows = [(c, self.app.store.ref(c.ref) or "")
                    for c in list_containers(self.app.store)]
        self._ui(self._show, rows)

    def _show(self, rows: list) -> None:
        from layerctl.containers.state import broken

        table = self.query_one(DataTable)
        table.clear()
        for c, base in sorted(rows, key=lambda r: r[0].name):
            name = Text(c.name, "bold")
            why = broken(c)
            if why:
                name.append(f" (broken: {why}; remove it)", "red")
            # a broken container may not have got its name: its actions go by id
            table.add_row(name, self.app.short_id(c.id), c.image,
                          self.app.short_id(base) if base else "-", c.driver,
                          ago(c.created, self.app.clock), key=c.id if why else c.name)
        table.border_subtitle = f"{len(rows)} container{'s' if len(rows) != 1 else ''}"

    def _current(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_open(self) -> None:
        name = self._current()
        if name:
            self.app.open_target(container=name)

    def action_create(self) -> None:
        def got_image(image: str | None) -> None:
            if not image:
                return

            def got_name(name: str | None) -> None:
                if name is not None:
                    self._run("create", image, name)

            self.app.push_screen(PromptDialog(f"Name for the container from {image}",
                                              placeholder="(empty: a generated name)"),
                                 got_name)

        self.app.push_screen(PromptDialog("Create a container from image (name:tag or layer)",
                                          check=lambda v: None if v else "give an image"),
                             got_image)

    def action_remove(self) -> None:
        name = self._current()
        if not name:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._run("remove", name, "")

        self.app.push_screen(ConfirmDialog(
            f"Remove container {name}?\n\nIts pending changes are lost; the layers it "
            "committed stay in the store.", "Remove"), answered)

    def action_reset(self) -> None:
        name = self._current()
        if not name:
            return

        def got_layer(layer: str | None) -> None:
            if layer is None:
                return

            def answered(yes: bool | None) -> None:
                if yes:
                    self._run("reset", name, layer)

            self.app.push_screen(ConfirmDialog(
                f"Reset container {name} to {layer or 'its base layer'}?\n\n"
                "Every pending change is discarded.", "Reset"), answered)

        self.app.push_screen(PromptDialog(
            f"Reset {name} to which layer? (id, name:tag, ~N; empty: its base)"), got_layer)

    @work(thread=True, group="containers-action")
    def _run(self, what: str, name: str, arg: str) -> None:
        from layerctl.containers import api

        store = self.app.store
        try:
            with self.app.store_lock:
                if what == "create":
                    c, notice = api.create(store, name, name=arg or None)
                    done = f"Created container {c.name}" + (f" ({notice})" if notice else "")
                elif what == "remove":
                    api.remove(store, name, force=True)
                    done = f"Removed container {name}"
                else:
                    c, target = api.reset(store, name, arg or None)
                    done = f"Container {c.name} is now at {self.app.short_id(target)}"
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        self._ui(self.notify, done, markup=False)
        self._ui(self._after, what, name)

    def _after(self, what: str, name: str) -> None:
        self.load()
        main = self.app._main()
        if main is not None and main.container == name:
            if what == "remove":
                self.app.container = None
                self.app.call_later(self.app.open_target)
            elif what == "reset":
                main.load_stack()
                main.rescan(restart=True)
