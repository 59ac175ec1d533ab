"""The Changes pane: the container's pending changes, live, with staging.

A line-API scroll view: it keeps the changes in a sorted list and renders only
the lines on screen, so 100k changes load, scroll, stage and update in constant
time per visible line (a widget or a table row per change would not).
Staging is a selection of paths for the next commit; nothing staged means the
commit takes everything.
"""

from __future__ import annotations

import bisect

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from layerctl.patch import path_text
from layerctl.store.diff import Change
from layerctl.tui.format import status_colour
from layerctl.tui.messages import ChangeHighlighted, StagingChanged

STAGED_MARK, UNSTAGED_MARK = "●", "·"


class DiscardRequested(Message):
    """The user asked to discard the change at `path` (the screen confirms it)."""

    def __init__(self, path: bytes) -> None:
        super().__init__()
        self.path = path


class ChangeList(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"changelist--cursor"}
    DEFAULT_CSS = """
    ChangeList > .changelist--cursor {
        background: $block-cursor-blurred-background;
    }
    ChangeList:focus > .changelist--cursor {
        background: $block-cursor-background;
        text-style: bold;
    }
    """
    BINDINGS = [
        Binding("space", "toggle_stage", "Stage/unstage"),
        Binding("a", "stage_all", "Stage all"),
        Binding("d", "discard", "Discard"),
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="changes", classes="pane")
        self.changes: dict[bytes, Change] = {}
        self.paths: list[bytes] = []  # sorted: the row order
        self.staged: set[bytes] = set()
        self.counts = {"A": 0, "C": 0, "D": 0}
        self.cursor = 0
        self._widest = 0
        self.border_title = "Changes"

    def on_mount(self) -> None:
        self._retitle()

    # -- rendering --------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.paths)

    def _row_text(self, index: int) -> Text:
        path = self.paths[index]
        ch = self.changes[path]
        v = self.app.theme_variables
        staged = path in self.staged
        text = Text(no_wrap=True)
        text.append(STAGED_MARK if staged else UNSTAGED_MARK,
                    style=status_colour(v, "staged" if staged else "dim"))
        text.append(f" {ch.status} ", style=f"bold {status_colour(v, ch.status)}")
        text.append(path_text(path), style=status_colour(v, ch.status))
        details = ch.details()
        if details:
            text.append("  " + ", ".join(details), style=status_colour(v, "dim"))
        return text

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        style = self.rich_style
        if index >= len(self.paths):
            if index == 0 and y == 0:
                empty = Text("no pending changes", style="italic")
                return Strip(list(empty.render(self.app.console, end=""))).crop_extend(
                    0, width, style)
            return Strip.blank(width, style)
        if index == self.cursor:  # the cursor's background under the text and the padding
            style = style + self.get_component_rich_style("changelist--cursor")
        segments = list(self._row_text(index).render(self.app.console, end=""))
        return Strip(segments).apply_style(style).crop_extend(scroll_x, scroll_x + width, style)

    def _resize_virtual(self) -> None:
        # As wide as the longest path (details may be cut): no needless scrollbar.
        width = max(self._widest, self.scrollable_content_region.width)
        self.virtual_size = Size(width, len(self.paths))

    def on_resize(self) -> None:
        self._resize_virtual()

    def _widen(self, paths: list[bytes]) -> None:
        if paths:
            self._widest = max(self._widest, max(len(p) for p in paths) + 5)

    # -- content ------------------------------------------------------------------

    def load(self, changes: list[Change]) -> None:
        """Replace every row (a full scan's result); staging of surviving paths is kept."""
        self.changes = {ch.path: ch for ch in changes}
        self.paths = sorted(self.changes)
        self._widest = 0
        self._widen(self.paths)
        self.staged &= self.changes.keys()
        self.counts = {"A": 0, "C": 0, "D": 0}
        for ch in changes:
            self.counts[ch.status] += 1
        self.cursor = min(self.cursor, max(0, len(self.paths) - 1))
        self._resize_virtual()
        self._retitle()
        self.refresh()
        self._highlighted()

    def apply(self, updates: list[tuple[bytes, Change | None]]) -> None:
        """A watcher's updates: (path, change now or None when it is clean again)."""
        current = self.current_path()
        for path, ch in updates:
            old = self.changes.get(path)
            if old is not None:
                self.counts[old.status] -= 1
            if ch is None:
                if old is not None:
                    del self.changes[path]
                    del self.paths[bisect.bisect_left(self.paths, path)]
                self.staged.discard(path)
                continue
            if old is None:
                bisect.insort(self.paths, path)
                self._widen([path])
            self.changes[path] = ch
            self.counts[ch.status] += 1
        # keep the cursor on the same path when rows come and go above it
        if current is not None and current in self.changes:
            self.cursor = bisect.bisect_left(self.paths, current)
        self.cursor = min(self.cursor, max(0, len(self.paths) - 1))
        self._resize_virtual()
        self._retitle()
        self.refresh()

    def _retitle(self) -> None:
        v = self.app.theme_variables if self.is_mounted else {}
        parts = [f"[{status_colour(v, s)}]{s} {n}[/]" for s, n in self.counts.items()]
        self.border_title = "Changes  " + "  ".join(parts)
        total = len(self.changes)
        self.border_subtitle = (f"{len(self.staged)} of {total} staged" if self.staged
                                else f"{total} pending, none staged")
        self.post_message(StagingChanged(len(self.staged), total))

    # -- cursor -------------------------------------------------------------------

    def current_path(self) -> bytes | None:
        return self.paths[self.cursor] if self.paths else None

    def select_path(self, path: bytes) -> None:
        self.move_to(bisect.bisect_left(self.paths, path))

    def move_to(self, index: int) -> None:
        if not self.paths:
            return
        index = max(0, min(index, len(self.paths) - 1))
        if index == self.cursor:
            return
        self.cursor = index
        height = self.scrollable_content_region.height or 1
        top = self.scroll_offset.y
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)
        self.refresh()
        self._highlighted()

    def _highlighted(self) -> None:
        path = self.current_path()
        if path is not None:
            self.post_message(ChangeHighlighted(path))

    def action_cursor(self, step: int) -> None:
        self.move_to(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, where: int) -> None:
        self.move_to(len(self.paths) - 1 if where < 0 else 0)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self.move_to(self.scroll_offset.y + offset.y)

    # -- staging ----------------------------------------------------------------

    def set_staged(self, paths: set[bytes], staged: bool) -> None:
        paths = paths & self.changes.keys()
        if staged:
            self.staged |= paths
        else:
            self.staged -= paths
        self._retitle()
        self.refresh()

    def action_toggle_stage(self) -> None:
        path = self.current_path()
        if path is None:
            return
        self.set_staged({path}, path not in self.staged)
        self.move_to(self.cursor + 1)

    def action_stage_all(self) -> None:
        everything = set(self.changes)
        self.set_staged(everything, self.staged != everything)

    def action_discard(self) -> None:
        path = self.current_path()
        if path is not None:
            self.post_message(DiscardRequested(path))

    def staged_changes(self) -> list[Change]:
        return [self.changes[p] for p in self.paths if p in self.staged]
