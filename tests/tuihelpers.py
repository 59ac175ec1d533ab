"""Running Textual apps in tests: the terminal size, async tests without a plugin,
waiting for a condition under Pilot."""

from __future__ import annotations

import asyncio
import functools
import time

from layerctl.tui.widgets.changes import ChangeList
from layerctl.tui.widgets.files import FileTree

SIZE = (160, 48)


def sync(fn):
    """Run an async test with asyncio (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))

    return run


async def wait_for(pilot, condition, timeout=10.0, what="condition"):
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
