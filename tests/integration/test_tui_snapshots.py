"""Snapshots of every screen in every shipped theme (pytest-textual-snapshot).

Deterministic by construction: the demo image has fixed contents and times, the
app's clock is fixed, layer and container ids are shown through fixed aliases
(ids hash the store format, which other changes may move), and the author comes
from LAYERCTL_AUTHOR. Update with `pytest tests/test_tui_snapshots.py
--snapshot-update` after an intended change, and look at the report.
"""

from __future__ import annotations

import time

import pytest

from layerctl import demo
from layerctl.containers import api
from layerctl.tui.app import LayerctlApp
from layerctl.tui.widgets.changes import ChangeList
from layerctl.tui.widgets.files import FileTree
from tests.tuihelpers import TIMEOUT, files_cursor

THEMES = ["dark", "light", "high-contrast"]
SIZE = (160, 48)
CLOCK = demo.EPOCH + 3 * 86400  # three days after the demo's first layer


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERCTL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("LAYERCTL_AUTHOR", "李雷 <lilei@example.com>")


@pytest.fixture
def make_app(store):
    """The demo image and container (two pending files), and an app factory."""
    result = demo.build(store, container="demo")
    demo.write_pending(store, "demo", "app.conf", "port = 8080\n")
    aliases = {layer_id: f"layer{i + 1}aaaaaa" for i, layer_id in enumerate(result.layers)}
    aliases[api.resolve(store, "demo").id] = "c0ffee000001"

    def make(theme: str) -> LayerctlApp:
        return LayerctlApp(store, container="demo", theme=theme, clock=lambda: CLOCK,
                           remember_theme=False, id_aliases=aliases)

    return make


async def settle(pilot, condition, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the screen did not settle")
        await pilot.pause(0.02)
    await pilot.pause(0.1)
    await pilot.wait_for_scheduled_animations()


async def main_ready(pilot):
    app = pilot.app
    await settle(pilot, lambda: bool(app.screen.query(ChangeList)))
    changes = app.screen.query_one(ChangeList)
    tree = app.screen.query_one(FileTree)
    # and no preview still being read: its result would land after the snapshot's wait
    await settle(pilot, lambda: len(changes.changes) == 2 and len(tree.root.children) == 8
                 and app.screen.query_one("#preview").current is not None
                 and not any(w.group == "preview" and not w.is_finished for w in app.workers))


@pytest.mark.parametrize("theme", THEMES)
def test_main_screen(snap_compare, make_app, theme):
    async def run_before(pilot):
        await main_ready(pilot)
        pilot.app.screen.query_one(ChangeList).focus()
        await pilot.pause(0.2)
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_commit_dialog(snap_compare, make_app, theme):
    async def run_before(pilot):
        await main_ready(pilot)
        changes = pilot.app.screen.query_one(ChangeList)
        changes.focus()
        await pilot.press("space")  # stage app.conf
        await pilot.press("c")
        await settle(pilot, lambda: pilot.app.screen.__class__.__name__ == "CommitDialog")
        await pilot.press(*"Configure the port")
        pilot.app.screen.query_one("#tag").value = "Bad:Tag!"
        await settle(pilot, lambda: "invalid image name" in str(
            pilot.app.screen.query_one("#tag-error").render()))

    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_log_screen(snap_compare, make_app, theme):
    async def run_before(pilot):
        await main_ready(pilot)
        await pilot.press("l")
        await settle(pilot, lambda: len(pilot.app.screen.query_one("#log").lines) > 30)

    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_images_screen(snap_compare, make_app, theme):
    async def run_before(pilot):
        await main_ready(pilot)
        await pilot.press("i")
        await settle(pilot, lambda: pilot.app.screen.query_one("#images").row_count == 1)

    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_containers_screen(snap_compare, make_app, theme):
    async def run_before(pilot):
        await main_ready(pilot)
        await pilot.press("o")
        await settle(pilot, lambda: pilot.app.screen.query_one("#containers").row_count == 1)

    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_help_screen(snap_compare, make_app, theme):
    async def run_before(pilot):
        await main_ready(pilot)
        await pilot.press("question_mark")
        await settle(pilot, lambda: pilot.app.screen.__class__.__name__ == "HelpScreen")

    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_waste_screen(snap_compare, make_app, theme):
    """The demo's layer 3 deletes file5 of layer 2: one inefficient path."""
    async def run_before(pilot):
        await main_ready(pilot)
        await pilot.press("w")
        await settle(pilot, lambda: pilot.app.screen.__class__.__name__ == "WasteScreen"
                     and pilot.app.screen.table.row_count == 1)

    assert snap_compare(make_app(theme), terminal_size=SIZE, run_before=run_before)


def test_blame_screen(snap_compare, make_app, store):
    """file5: added by layer 2, deleted by layer 3's whiteout."""
    layers = demo.build_image(store)

    async def run_before(pilot):
        await main_ready(pilot)
        main = pilot.app.screen
        main.show_layer(layers[2], b"file5")
        await settle(pilot, lambda: files_cursor(pilot.app) == b"file5")
        await pilot.press("b")
        await settle(pilot, lambda: pilot.app.screen.__class__.__name__ == "BlameScreen"
                     and pilot.app.screen.table.row_count == 2)

    assert snap_compare(make_app("dark"), terminal_size=SIZE, run_before=run_before)


def test_wide_characters_keep_the_columns_aligned(make_app):
    """Chinese author names and messages take two cells each: every rendered row of the
    stack is exactly as wide as the pane, and the columns after them line up."""
    import asyncio

    async def run():
        app = make_app("dark")
        async with app.run_test(size=SIZE) as pilot:
            await main_ready(pilot)
            stack = app.screen.stack
            width = stack.scrollable_content_region.width
            lines = [stack.render_line(y) for y in range(stack.row_count + 1)]
            texts = [strip.text for strip in lines]
            assert all(strip.cell_length == width for strip in lines)
            wide = next(t for t in texts if "第二层" in t)
            assert "张伟" in wide
            plain = next(t for t in texts if "Layer 1: files 1-3" in t)
            from rich.cells import cell_len

            # the Age column starts at the same cell in both rows
            assert cell_len(wide[:wide.index("days ago") - 2]) == cell_len(
                plain[:plain.index("days ago") - 2])

    asyncio.run(run())
