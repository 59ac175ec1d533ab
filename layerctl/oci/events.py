"""Progress events of registry transfers, for the CLI and the TUI to render.

`id` is a layer's short digest (12 hex digits) or None for a line about the whole
image; `status` is Docker's wording ("Pulling fs layer", "Downloading",
"Already exists", "Pull complete", "Pushing", "Pushed", "Layer already exists");
`current`/`total` count bytes while a blob moves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from layerctl.words import human_size


@dataclass(frozen=True)
class Event:
    id: str | None
    status: str
    current: int = 0
    total: int = 0


Progress = Callable[[Event], None]


def quiet(event: Event) -> None:
    """A Progress that shows nothing."""


def throughput(nbytes: int, seconds: float) -> str:
    """'92.9MB in 1.83s (50.8MB/s)': a transfer's total and its rate, Docker's units."""
    seconds = max(seconds, 1e-3)
    return f"{human_size(nbytes)} in {seconds:.2f}s ({human_size(int(nbytes / seconds))}/s)"


def rate(nbytes: int, seconds: float) -> str:
    """'50.8MB/s', or '' before there is anything to tell."""
    return f"{human_size(int(nbytes / seconds))}/s" if seconds > 0.05 and nbytes else ""
