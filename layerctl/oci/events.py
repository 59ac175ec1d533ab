"""Progress events of registry transfers, for the CLI and the TUI to render.

`id` is a layer's short digest (12 hex digits) or None for a line about the whole
image; `status` is Docker's wording ("Pulling fs layer", "Downloading",
"Already exists", "Pull complete", "Pushing", "Pushed", "Layer already exists");
`current`/`total` count bytes while a blob moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    id: str | None
    status: str
    current: int = 0
    total: int = 0


Progress = Callable[[Event], None]


def quiet(event: Event) -> None:
    """A Progress that shows nothing."""
