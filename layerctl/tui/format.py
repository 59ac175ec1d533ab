"""How the TUI words and colours things (presentation only: no store access)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text

from layerctl.browse import human_size

__all__ = ["ago", "human_size", "status_text", "STATUS_WORDS"]

STATUS_WORDS = {"A": "added", "C": "changed", "D": "deleted", "": "unchanged"}
_FALLBACK = {"A": "green", "C": "yellow", "D": "red", "": "", "staged": "cyan", "dim": "grey50"}


def status_colour(variables: dict[str, str], status: str) -> str:
    """The theme's colour for a change status (layerctl-added etc. in the theme file)."""
    key = {"A": "added", "C": "changed", "D": "deleted"}.get(status, status)
    return variables.get(f"layerctl-{key}", _FALLBACK.get(status, ""))


def status_text(variables: dict[str, str], status: str) -> Text:
    return Text(status or " ", style=f"bold {status_colour(variables, status)}".strip())


def ago(timestamp: float, clock: Callable[[], float] = time.time) -> str:
    """'3 days ago', compact enough for a table column."""
    delta = max(0.0, clock() - timestamp)
    for seconds, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"),
                          (86400, "day"), (3600, "hour"), (60, "minute")):
        if delta >= seconds:
            n = int(delta // seconds)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"
