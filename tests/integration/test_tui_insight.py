"""The TUI's waste and blame screens, driven with Pilot against a real store: an
image built by hand through the core API with known waste, figures checked against
layerctl.insight.waste and against values computed by hand, and each jump back to the main
screen checked in the Layers and Files panes."""

from __future__ import annotations

import os

import pytest

from layerctl.insight.history import resolve_target
from layerctl.insight.waste import analyze, default_base
from layerctl.tui.app import LayerctlApp
from layerctl.tui.screens.blame import BlameScreen
from layerctl.tui.screens.main import MainScreen
from layerctl.tui.screens.waste import WasteScreen
from layerctl.words import human_size
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.tuihelpers import SIZE, files_cursor, run_command, sync, wait_for

IMAGE = "wimg:latest"


@pytest.fixture(autouse=True)
def _config(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERCTL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("LAYERCTL_AUTHOR", "Tester <tester@example.com>")


def _put(path: bytes, size: int):
    def edit(editor, writer):
        put_file(editor, writer, path, bytes([size % 251]) * size)
    return edit


def _delete(path: bytes):
    def edit(editor, writer):
        assert editor.delete(path)
    return edit


@pytest.fixture
def image(store, tmp_path) -> list[str]:
    """base: app/conf 1000, data/a 5000, data/b 7000, keep 10 (13,010 bytes);
    L1 rewrites app/conf to 3000 bytes, L2 deletes data/a, L3 rewrites app/conf to 2000.
    Waste: /data/a 5000 deleted by L2; /app/conf 1000 + 3000 overwritten, last by L3."""
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "data").mkdir()
    (src / "app" / "conf").write_bytes(b"c" * 1000)
    (src / "data" / "a").write_bytes(b"a" * 5000)
    (src / "data" / "b").write_bytes(b"b" * 7000)
    (src / "keep").write_bytes(b"k" * 10)
    base = import_dir(store, src, "wimg:base")
    l1 = commit_edit(store, base, _put(b"app/conf", 3000), message="grow conf")
    l2 = commit_edit(store, l1, _delete(b"data/a"), message="rm data/a")
    l3 = commit_edit(store, l2, _put(b"app/conf", 2000), name=IMAGE, message="shrink conf")
    return [base, l1, l2, l3]


def _cells(table, row: int) -> list[str]:
    return [str(c) for c in table.get_row_at(row)]


async def _main_ready(pilot, app, top: str) -> MainScreen:
    main = app.screen
    await wait_for(pilot, lambda: main.stack.row_count and main.stack.selected_layer() == top
                   and main.file_tree.root.children, what="the stack and files")
    return main


@sync
async def test_waste_screen_figures_sort_and_jump_to_the_culprit(store, image):
    base, l1, l2, l3 = image
    target = resolve_target(store, IMAGE)
    report = analyze(store, target, *default_base(store, target))
    # by hand, then the core's figures the screen must show
    total, visible = 13_010 + 3000 + 0 + 2000, 10 + 7000 + 2000
    assert (report.total, report.visible, report.reclaimable) == (total, visible, 9000)
    assert report.user_ratio == pytest.approx(9000 / 5000)

    app = LayerctlApp(store, image=IMAGE)
    async with app.run_test(size=SIZE) as pilot:
        main = await _main_ready(pilot, app, l3)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WasteScreen)
                       and app.screen.table.row_count == 2, what="the waste report")
        screen = app.screen
        summary = str(screen.query_one("#waste-summary").render())
        assert f"Efficiency: {visible / total * 100:.4f} %" in summary
        assert f"{report.efficiency * 100:.4f} %" in summary
        for label, n in (("Total", total), ("Visible", visible), ("Reclaimable", 9000)):
            assert f"{label}: {human_size(n)} ({n:,} bytes)" in summary
        assert "User wasted: 180.0000 %" in summary and "base wimg:base" in summary

        table = screen.table
        # default: most wasted first
        rows = [_cells(table, i) for i in range(2)]
        assert [r[4] for r in rows] == ["/data/a", "/app/conf"]
        assert rows[0][:2] == [human_size(5000), "deleted"] and rows[0][2].startswith("2 ")
        assert rows[0][3] == "1"
        assert rows[1][:2] == [human_size(4000), "overwritten"] and rows[1][2].startswith("3 ")
        assert rows[1][3] == "3"  # three copies of /app/conf were shipped
        assert "rm data/a" in rows[0][2] and "shrink conf" in rows[1][2]

        await pilot.press("p")  # by path
        assert [_cells(table, i)[4] for i in range(2)] == ["/app/conf", "/data/a"]
        await pilot.press("p")  # again: reversed
        assert [_cells(table, i)[4] for i in range(2)] == ["/data/a", "/app/conf"]
        await pilot.press("k")  # by class: deleted before overwritten
        assert [_cells(table, i)[1] for i in range(2)] == ["deleted", "overwritten"]
        await pilot.press("s")
        assert [_cells(table, i)[4] for i in range(2)] == ["/data/a", "/app/conf"]

        table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main, what="back on the main screen")
        await wait_for(pilot, lambda: files_cursor(app) == b"data/a",
                       what="Files on /data/a")
        assert main.stack.selected_layer() == l2  # the layer that deleted it
        assert main.selected == l2
        assert main.file_tree.cursor_node.data.status == "D"

        # the other row: /app/conf, wasted last by the top layer
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WasteScreen)
                       and app.screen.table.row_count == 2, what="the waste report again")
        app.screen.table.move_cursor(row=1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main and files_cursor(app) == b"app/conf",
                       what="Files on /app/conf")
        assert main.stack.selected_layer() == l3


@sync
async def test_blame_a_file_changed_in_two_layers_and_jump(store, image):
    base, l1, l2, l3 = image
    app = LayerctlApp(store, image=IMAGE)
    async with app.run_test(size=SIZE) as pilot:
        main = await _main_ready(pilot, app, l3)
        assert main.show_layer(l3, b"app/conf")  # the layer shown already: Files moves only
        await wait_for(pilot, lambda: files_cursor(app) == b"app/conf", what="/app/conf")
        assert main.file_tree.has_focus
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BlameScreen)
                       and app.screen.table.row_count == 3, what="the blame events")
        table = app.screen.table
        rows = [_cells(table, i) for i in range(3)]
        ids = [app.short_id(x) for x in (base, l1, l3)]
        assert [r[0] for r in rows] == ids  # added by the base, rewritten by L1 and L3
        assert [r[1].split(" ")[0] for r in rows] == ["added", "content", "content"]
        assert [r[4] for r in rows] == [human_size(n) for n in (1000, 3000, 2000)]
        assert all(r[2] == "Test" for r in rows)
        assert rows[1][5] == "grow conf"
        assert table.cursor_row == 2  # the latest event first under the cursor

        table.move_cursor(row=1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main and main.selected == l1
                       and files_cursor(app) == b"app/conf", what="layer L1 and /app/conf")
        assert main.stack.selected_layer() == l1

        # a deleted file: its deletion is the last event, and enter selects that layer
        main.show_layer(l2, b"data/a")
        await wait_for(pilot, lambda: main.selected == l2 and files_cursor(app) == b"data/a",
                       what="/data/a in L2")
        main.stack.select_layer(l3)  # away again, then blame from the top layer's Files
        await wait_for(pilot, lambda: main.selected == l3 and main.file_tree.root.children)
        main.show_layer(l3, b"data/b")
        await wait_for(pilot, lambda: files_cursor(app) == b"data/b")
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BlameScreen)
                       and app.screen.history is not None)
        assert [e.step.id for e in app.screen.history.events] == [base]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is main)


@sync
async def test_blame_of_a_deleted_path_names_the_deleting_layer(store, image):
    base, l1, l2, l3 = image
    app = LayerctlApp(store, image=IMAGE)
    async with app.run_test(size=SIZE) as pilot:
        main = await _main_ready(pilot, app, l3)
        main.show_layer(l2, b"data/a")
        await wait_for(pilot, lambda: main.selected == l2 and files_cursor(app) == b"data/a")
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BlameScreen)
                       and app.screen.table.row_count == 2)
        rows = [_cells(app.screen.table, i) for i in range(2)]
        assert [r[0] for r in rows] == [app.short_id(base), app.short_id(l2)]
        assert rows[1][1] == "deleted (whiteout)"
        app.screen.table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main and main.selected == base
                       and files_cursor(app) == b"data/a")


@sync
async def test_a_containers_pending_layer_is_a_culprit_and_a_blame_event(store, image):
    """The pending change rewrites /keep: the "(uncommitted)" step wasted its 10 bytes,
    and the base moves to the image the container was made from."""
    from layerctl import demo
    from layerctl.containers import api

    base, l1, l2, l3 = image
    api.create(store, IMAGE, name="wc")
    demo.write_pending(store, "wc", "keep", "K" * 25)
    app = LayerctlApp(store, container="wc")
    async with app.run_test(size=SIZE) as pilot:
        main = app.screen
        await wait_for(pilot, lambda: main.stack.row_count == 5
                       and len(main.change_list.changes) == 1, what="stack and change")
        main.stack.select_layer(l1)  # away from the pending row, so the jump must move
        await wait_for(pilot, lambda: main.selected == l1)
        await run_command(pilot, "Waste", "Waste")  # the palette offers the waste view
        await wait_for(pilot, lambda: isinstance(app.screen, WasteScreen)
                       and app.screen.table.row_count == 3, what="three inefficient paths")
        screen = app.screen
        summary = str(screen.query_one("#waste-summary").render())
        # user layers: only the pending one (25 bytes shipped, 10 wasted)
        assert "User wasted: 40.0000 %" in summary and "base wimg:latest: layers 0-3" in summary
        total = 13_010 + 3000 + 2000 + 25
        assert f"({total:,} bytes)" in summary and "(9,010 bytes)" in summary
        rows = {_cells(screen.table, i)[4]: i for i in range(3)}
        keep = _cells(screen.table, rows["/keep"])
        assert keep[1] == "overwritten" and keep[2].startswith("4 (uncommitted) pending")
        screen.table.move_cursor(row=rows["/keep"])
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main and main.selected is None
                       and files_cursor(app) == b"keep", what="the pending row and /keep")
        assert main.stack.selected_layer() is None and main.stack.cursor_row == 0

        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BlameScreen)
                       and app.screen.table.row_count == 2, what="blame of /keep")
        rows = [_cells(app.screen.table, i) for i in range(2)]
        assert [r[0] for r in rows] == [app.short_id(base), "(uncommitted)"]
        assert rows[1][1].startswith("content") and rows[1][4] == human_size(25)
        app.screen.table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main and main.selected == base
                       and files_cursor(app) == b"keep", what="the base layer")


HOSTILE = b"we\x1bird\n[red]x\xff"  # an escape, a newline, markup, a byte that is not UTF-8


@sync
async def test_hostile_names_are_quoted_and_still_found(store, tmp_path):
    from layerctl.words import path_text

    src = tmp_path / "src"
    src.mkdir()
    (src / os.fsdecode(HOSTILE)).write_bytes(b"h" * 300)
    (src / "other").write_bytes(b"o")
    base = import_dir(store, src, "hostile:base")
    top = commit_edit(store, base, _delete(HOSTILE), name="hostile:latest", message="rm it")
    app = LayerctlApp(store, image="hostile:latest")
    async with app.run_test(size=SIZE) as pilot:
        main = await _main_ready(pilot, app, top)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WasteScreen)
                       and app.screen.table.row_count == 1)
        shown = _cells(app.screen.table, 0)[4]
        assert shown == path_text(HOSTILE) == '"/we\\033ird\\n[red]x\\377"'
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main and files_cursor(app) == HOSTILE)
        assert main.selected == top
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BlameScreen)
                       and app.screen.table.row_count == 2)
        assert path_text(HOSTILE) in str(app.screen.table.border_title)
        assert [_cells(app.screen.table, i)[0] for i in range(2)] == [
            app.short_id(base), app.short_id(top)]


@sync
async def test_a_removed_directory_is_one_row_and_enter_reveals_it(store, tmp_path):
    """rm -rf of a directory of three files: one row standing for them (as the CLI
    collapses it), and enter opens the culprit layer on the directory itself."""
    src = tmp_path / "src"
    (src / "srv" / "cache").mkdir(parents=True)
    for i in range(3):
        (src / "srv" / "cache" / f"f{i}").write_bytes(b"c" * 1000)
    base = import_dir(store, src, "dirs:base")
    top = commit_edit(store, base, _delete(b"srv/cache"), name="dirs:latest", message="rm -rf")
    app = LayerctlApp(store, image="dirs:latest")
    async with app.run_test(size=SIZE) as pilot:
        main = await _main_ready(pilot, app, top)
        main.stack.select_layer(base)
        await wait_for(pilot, lambda: main.selected == base)
        # Files hides deleted entries and searches for something else: the jump drops both
        main.file_tree.action_toggle_kind("D")
        main.file_tree.set_query("nothing-like-it")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WasteScreen)
                       and app.screen.table.row_count == 1)
        row = _cells(app.screen.table, 0)
        assert row[4] == "/srv/cache/ (directory, 3 files)"
        assert row[0].strip() == human_size(3000) and row[1] == "deleted"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is main and main.selected == top
                       and files_cursor(app) == b"srv/cache", what="the removed directory")
        assert main.file_tree.cursor_node.data.status == "D"
        assert main.file_tree.query_text == "" and "D" in main.file_tree.kinds


@sync
async def test_edit_history_screen_drops_and_rewords_layers(store, image):
    # `E` opens the todo list of rebase -i; the edited list runs with ctrl+s, and a
    # reword asks for the message in a prompt.
    from textual.widgets import Input, TextArea

    from layerctl.images import chain, resolve
    from layerctl.store.fstree import lookup
    from layerctl.tui.screens.rebase import RebaseScreen

    base, l1, l2, l3 = image
    app = LayerctlApp(store, image=IMAGE)
    async with app.run_test(size=SIZE) as pilot:
        await _main_ready(pilot, app, l3)
        await pilot.press("E")
        await wait_for(pilot, lambda: isinstance(app.screen, RebaseScreen)
                       and "pick" in app.screen.query_one(TextArea).text, what="the todo")
        area = app.screen.query_one(TextArea)
        lines = area.text.splitlines()
        assert [ln.split()[:2] for ln in lines[:3]] == [
            ["pick", l1[:12]], ["pick", l2[:12]], ["pick", l3[:12]]]
        area.text = "\n".join([lines[0].replace("pick", "reword", 1),
                               lines[1].replace("pick", "drop", 1), lines[2]]) + "\n"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.query("#prompt-input"), what="the prompt")
        prompt = app.screen.query_one("#prompt-input", Input)
        assert prompt.value == "grow conf"
        prompt.value = "grow the conf"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="main again")
    layers = chain(store, resolve(store, IMAGE))
    assert [la.id for la in layers][0] == base and len(layers) == 3
    assert [la.summary for la in layers[1:]] == ["grow the conf", "shrink conf"]
    assert lookup(store, layers[-1].root, b"data/a") is not None  # its deletion dropped
