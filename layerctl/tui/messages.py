"""Messages the widgets and screens post, named as past-tense events."""

from __future__ import annotations

from textual.message import Message

from layerctl.presentation.browse import Entry


class LayerSelected(Message):
    """A row of the layer stack was highlighted: a layer id, or None for pending."""

    def __init__(self, layer_id: str | None) -> None:
        super().__init__()
        self.layer_id = layer_id


class EntryHighlighted(Message):
    """A file of the Files tree (or a change of the Changes list) was highlighted."""

    def __init__(self, entry: Entry | None, diff: bool = False) -> None:
        super().__init__()
        self.entry = entry
        self.diff = diff


class ChangeHighlighted(Message):
    """A pending change was highlighted in the Changes list."""

    def __init__(self, path: bytes) -> None:
        super().__init__()
        self.path = path


class StagingChanged(Message):
    """Paths were staged or unstaged."""

    def __init__(self, staged: int, total: int) -> None:
        super().__init__()
        self.staged = staged
        self.total = total


class StoreChanged(Message):
    """Something wrote to the store (commit, tag, reset...): views should reload."""
