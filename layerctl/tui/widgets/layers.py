"""The Layers pane: the image's layer stack, newest on top, the container's pending
layer above it. Highlighting a row selects that layer for the other panes."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from layerctl.store.layers import Layer
from layerctl.tui.format import ago, author_short, human_size
from layerctl.tui.messages import LayerSelected

PENDING = "pending"


class LayerStack(DataTable):
    """One row per layer: short id, message, author, age, size."""

    BINDINGS = [
        Binding("R", "screen.reset_to_layer", "Reset here"),
    ]

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(cursor_type="row", id="layers", classes="pane")
        self.clock = clock
        self.stack_layers: list[Layer] = []
        self.has_pending = False
        self.border_title = "Layers"

    def on_mount(self) -> None:
        self.add_column("ID", key="id")
        self.add_column("Message", key="message", width=20)
        self.add_column("Author", key="author", width=12)
        self.add_column("Age", key="age")
        self.add_column("Size", key="size")

    def show_stack(self, layers: list[Layer], sizes: dict[str, int], pending: int | None,
                   author: str) -> None:
        """Fill the stack; `sizes` by layer id (images.layer_size); `pending` is the
        container's change count (None: no container)."""
        keep = self.selected_layer() if self.row_count else None
        self.clear()
        self.stack_layers = layers
        self.has_pending = pending is not None
        if pending is not None:
            self.add_row(*self._pending_cells(pending, author), key=PENDING)
        for layer in reversed(layers):
            self.add_row(
                Text(self.app.short_id(layer.id), style="bold"),
                _clip(layer.summary or "(no message)", 20),
                _clip(author_short(layer.author_name), 12),
                ago(layer.author_time, self.clock),
                human_size(sizes[layer.id]),
                key=layer.id,
            )
        self.border_subtitle = f"{len(layers)} layer{'s' if len(layers) != 1 else ''}"
        target = keep if keep is not None or not self.has_pending else None
        row = 0
        if target is not None and target in {layer.id for layer in layers}:
            row = self.get_row_index(target)
        self.move_cursor(row=row)
        self.post_message(LayerSelected(self.selected_layer()))

    def _pending_cells(self, pending: int, author: str) -> tuple:
        word = "change" if pending == 1 else "changes"
        return (
            Text("(pending)", style="italic bold"),
            Text(f"{pending} pending {word}", style="italic"),
            _clip(author_short(author), 12),
            "now",
            "",
        )

    def update_pending(self, pending: int, author: str) -> None:
        if not self.has_pending:
            return
        for key, cell in zip(("id", "message", "author", "age", "size"),
                             self._pending_cells(pending, author), strict=True):
            self.update_cell(PENDING, key, cell)

    def selected_layer(self) -> str | None:
        """The highlighted layer's id; None for the pending row (or an empty stack)."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if key == PENDING else key

    def select_layer(self, layer_id: str | None) -> bool:
        """Move the cursor to a layer (None: the pending row); False if it is not in the
        stack. Moving posts LayerSelected as a user's move would."""
        key = PENDING if layer_id is None else layer_id
        try:
            row = self.get_row_index(key)
        except RowDoesNotExist:
            return False
        self.move_cursor(row=row)
        return True

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = event.row_key.value
        self.post_message(LayerSelected(None if key == PENDING else key))


def _clip(text: str, width: int) -> str:
    """Cut to `width` terminal cells (wide characters count two) with an ellipsis."""
    from rich.cells import cell_len, set_cell_size

    return text if cell_len(text) <= width else set_cell_size(text, width - 1) + "…"
