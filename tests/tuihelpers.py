"""Running Textual apps in tests: the terminal size, async tests without a plugin,
waiting for a condition under Pilot."""

from __future__ import annotations

import asyncio
import functools
import time

from layerctl.tui.widgets.changes import ChangeList
from layerctl.tui.widgets.files import FileTree

SIZE = (160, 48)
# How long a wait for the UI may take before the test fails: a bound, not a pause (a
# passing run never waits it out), generous for a loaded 2-core CI machine where a
# worker thread or Textual's first CSS build can take seconds.
TIMEOUT = 60.0


def sync(fn):
    """Run an async test with asyncio (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))

    return run


async def wait_for(pilot, condition, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def changes_of(app) -> ChangeList:
    return app.screen.query_one(ChangeList)


def select_change(table: ChangeList, path: bytes) -> None:
    table.select_path(path)


def files_cursor(app) -> bytes | None:
    """The path under the Files cursor; None while the tree is being rebuilt."""
    node = app.screen.query_one(FileTree).cursor_node
    return getattr(node.data, "path", None) if node is not None else None


async def run_command(pilot, query: str, title: str) -> None:
    """Open the command palette, type `query` and run the command `title`. Keys are
    typed only once the palette has focus (before, they reach the screen below), and
    enter is pressed only once the palette has gathered the hits for the whole query
    and highlights `title`: hits come from a worker, and a fixed pause before enter is
    too short on a loaded machine (enter then runs an older hit, or none)."""
    from textual.command import CommandInput, CommandList, CommandPalette

    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette)
                   and app.screen.query_one(CommandInput).has_focus, what="the palette")
    palette = app.screen
    await pilot.press(*query)

    def offers_title() -> bool:
        if palette.query_one(CommandInput).value != query:
            return False
        if any(w.node is palette and not w.is_finished for w in app.workers):
            return False  # still gathering: the list may yet change
        option = palette.query_one(CommandList).highlighted_option
        return option is not None and str(option.hit.text) == title

    await wait_for(pilot, offers_title, what=f"the palette to offer {title!r}")
    await pilot.press("enter")
