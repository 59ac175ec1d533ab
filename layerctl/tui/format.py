"""How the TUI words and colours things (presentation only: no store access)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text

from layerctl import words
from layerctl.words import human_size  # noqa: F401 - re-exported

__all__ = ["ago", "author_short", "human_size", "status_text", "STATUS_WORDS"]

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
    text = words.ago(timestamp, clock)
    return "just now" if text.startswith("Less than") else text


def author_short(author: str) -> str:
    """'Jane <jane@x>' -> 'Jane': tables show names, the log shows emails."""
    return author.split(" <", 1)[0] if " <" in author else author
