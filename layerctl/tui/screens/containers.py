"""The containers screen: create, open, remove, reset to a layer (with a confirm)."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.widgets import DataTable

from layerctl.tui.format import ago
from layerctl.tui.screens.dialogs import PromptDialog
from layerctl.tui.screens.table import TableScreen


class ContainersScreen(TableScreen):
    TABLE_ID = "containers"
    COLUMNS = ("Name", "Container ID", "Image", "Base layer", "Driver", "Created")
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "create", "Create"),
        Binding("x", "remove", "Remove"),
        Binding("R", "reset", "Reset to layer"),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("question_mark", "app.show_help", "Help"),
    ]

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
                    self._create(image, name)

            self.app.push_screen(PromptDialog(f"Name for the container from {image}",
                                              placeholder="(empty: a generated name)"),
                                 got_name)

        self.app.push_screen(PromptDialog("Create a container from image (name:tag or layer)",
                                          check=lambda v: None if v else "give an image"),
                             got_image)

    def _create(self, image: str, name: str) -> None:
        def create(store: object) -> str:
            from layerctl.containers import api

            c, notice = api.create(store, image, name=name or None)
            return f"Created container {c.name}" + (f" ({notice})" if notice else "")

        self._act(create, self.load)

    def action_remove(self) -> None:
        name = self._current()
        if not name:
            return

        def remove(store: object) -> str:
            from layerctl.containers import api

            api.remove(store, name, force=True)
            return f"Removed container {name}"

        self._confirm(f"Remove container {name}?\n\nIts pending changes are lost; the "
                      "layers it committed stay in the store.", "Remove",
                      lambda: self._act(remove, lambda: self._after("remove", name)))

    def action_reset(self) -> None:
        name = self._current()
        if not name:
            return

        def reset(layer: str) -> Callable[[object], str]:
            def run(store: object) -> str:
                from layerctl.containers import api

                c, target = api.reset(store, name, layer or None)
                return f"Container {c.name} is now at {self.app.short_id(target)}"

            return run

        def got_layer(layer: str | None) -> None:
            if layer is not None:
                self._confirm(f"Reset container {name} to {layer or 'its base layer'}?\n\n"
                              "Every pending change is discarded.", "Reset",
                              lambda: self._act(reset(layer),
                                                lambda: self._after("reset", name)))

        self.app.push_screen(PromptDialog(
            f"Reset {name} to which layer? (id, name:tag, ~N; empty: its base)"), got_layer)

    def _after(self, what: str, name: str) -> None:
        self.load()
        main = self.app._main()
        if main is not None and main.container == name:
            if what == "remove":
                self.app.container = None
                self.app.call_later(self.app.open_target)
            elif what == "reset":
                main.reload()
