"""The TUI driven end to end with Pilot against a real store and a real container."""

from __future__ import annotations

import asyncio
import functools
import os
import time

import pytest

from layerctl import demo
from layerctl.containers import api
from layerctl.store.diff import diff
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from layerctl.tui.app import LayerctlApp
from layerctl.tui.screens.commit import CommitDialog
from layerctl.tui.screens.dialogs import ConfirmDialog
from layerctl.tui.widgets.changes import ChangeList
from layerctl.tui.widgets.files import FileTree

SIZE = (160, 48)


def sync(fn):
    """Run an async test with asyncio (no async pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))

    return run


@pytest.fixture(autouse=True)
def _config(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERCTL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("LAYERCTL_AUTHOR", "Tester <tester@example.com>")


@pytest.fixture
def store(store_root):
    s = Store(str(store_root))
    yield s
    s.close()


@pytest.fixture
def container(store):
    """The demo image and a container on it with three pending files."""
    demo.build_image(store)
    c, _ = api.create(store, demo.IMAGE, name="web")
    for name in ("a.txt", "b.txt", "c.txt"):
        demo.write_pending(store, c.name, name, f"{name} content\n")
    return c.name


async def wait_for(pilot, condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def changes_of(app) -> ChangeList:
    return app.screen.query_one(ChangeList)


def select_change(table: ChangeList, path: bytes) -> None:
    table.move_cursor(row=table.get_row_index(path.decode()))


@sync
async def test_stage_two_of_three_and_commit_through_the_dialog(store, container):
    app = LayerctlApp(store, container=container)
    async with app.run_test(size=SIZE) as pilot:
        table = changes_of(app)
        await wait_for(pilot, lambda: len(table.changes) == 3, what="three changes")
        assert "A 3" in str(table.border_title)
        table.focus()
        select_change(table, b"a.txt")
        await pilot.press("space")  # stages a.txt and moves to b.txt
        await pilot.press("space")
        assert table.staged == {b"a.txt", b"b.txt"}
        assert "2 of 3 staged" in str(table.border_subtitle)

        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CommitDialog), what="dialog")
        dialog = app.screen
        assert [ch.path for ch in dialog.changes] == [b"a.txt", b"b.txt"]
        assert dialog.query_one("#author").value == "Tester <tester@example.com>"
        await pilot.press(*"add a and b")
        dialog.query_one("#description").text = "two of the three files"
        dialog.query_one("#author").value = "李雷 <lilei@example.com>"
        dialog.query_one("#tag").value = "web:v2"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, CommitDialog),
                       what="the commit to land")
        await wait_for(pilot, lambda: set(table.changes) == {b"c.txt"}, what="rescan")
        assert table.staged == set()

    c = api.resolve(store, container)
    layer = read_layer(store, store.ref(c.ref))
    assert layer.author == "李雷 <lilei@example.com>"
    assert layer.message == "add a and b\n\ntwo of the three files"
    parent = read_layer(store, layer.parent)
    assert {ch.path for ch in diff(store, parent.root, layer.root)} == {b"a.txt", b"b.txt"}
    assert [ch.path for ch in api.status(store, container)] == [b"c.txt"]
    assert store.ref("refs/images/web/_tags/v2") == layer.id


@sync
async def test_commit_dialog_validates_and_keeps_what_was_typed(store, container):
    app = LayerctlApp(store, container=container)
    async with app.run_test(size=SIZE) as pilot:
        table = changes_of(app)
        await wait_for(pilot, lambda: len(table.changes) == 3)
        await pilot.press("c")  # nothing staged: the dialog takes everything
        await wait_for(pilot, lambda: isinstance(app.screen, CommitDialog))
        dialog = app.screen
        assert dialog.everything and len(dialog.changes) == 3
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, CommitDialog)
        assert "summary is empty" in str(dialog.query_one("#commit-error").render())
        await pilot.press(*"all three")
        dialog.query_one("#tag").value = "Not A Valid:name!"
        await pilot.pause()
        assert "invalid image name" in str(dialog.query_one("#tag-error").render())
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, CommitDialog)
        assert "invalid image name" in str(dialog.query_one("#commit-error").render())
        assert dialog.query_one("#summary").value == "all three"  # nothing lost
        await pilot.press("escape")
        assert not isinstance(app.screen, CommitDialog)
    assert len(api.status(store, container)) == 3  # cancelled: nothing committed


@sync
async def test_commit_error_shows_in_the_dialog(store, container):
    app = LayerctlApp(store, container=container)
    async with app.run_test(size=SIZE) as pilot:
        table = changes_of(app)
        await wait_for(pilot, lambda: len(table.changes) == 3)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CommitDialog))
        dialog = app.screen
        await pilot.press(*"will fail")
        api.remove(store, container, force=True)  # the container vanishes meanwhile
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "Commit failed" in str(
            dialog.query_one("#commit-error").render()), what="the error")
        assert isinstance(app.screen, CommitDialog)
        assert dialog.query_one("#summary").value == "will fail"
        assert not dialog.busy


@sync
async def test_a_file_written_appears_within_half_a_second(store, container):
    app = LayerctlApp(store, container=container)
    async with app.run_test(size=SIZE) as pilot:
        table = changes_of(app)
        await wait_for(pilot, lambda: len(table.changes) == 3)
        await wait_for(pilot, lambda: app.screen.watcher is not None, what="the watcher")
        await pilot.pause(0.3)  # let the observer settle
        start = time.monotonic()
        demo.write_pending(store, container, "late.txt", "written while watching\n")
        await wait_for(pilot, lambda: b"late.txt" in table.changes, timeout=5)
        latency = time.monotonic() - start
        assert "A 4" in str(table.border_title)
        print(f"change latency: {latency * 1000:.0f} ms")
        assert latency < 0.5 + 0.5 * bool(os.environ.get("CI"))


@sync
async def test_discard_a_change_after_confirming(store, container):
    app = LayerctlApp(store, container=container)
    async with app.run_test(size=SIZE) as pilot:
        table = changes_of(app)
        await wait_for(pilot, lambda: len(table.changes) == 3)
        table.focus()
        select_change(table, b"b.txt")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")  # first say no: nothing happens
        await pilot.pause(0.2)
        assert b"b.txt" in table.changes
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: b"b.txt" not in table.changes, what="the discard")
    assert [ch.path for ch in api.status(store, container)] == [b"a.txt", b"c.txt"]


@sync
async def test_stage_all_and_files_pane(store, container):
    app = LayerctlApp(store, container=container)
    async with app.run_test(size=SIZE) as pilot:
        table = changes_of(app)
        await wait_for(pilot, lambda: len(table.changes) == 3)
        table.focus()
        await pilot.press("a")
        assert table.staged == {b"a.txt", b"b.txt", b"c.txt"}
        await pilot.press("a")
        assert table.staged == set()
        tree = app.screen.query_one(FileTree)
        # pending row selected: the tree shows base files plus the pending ones
        await wait_for(pilot, lambda: len(tree.root.children) == 9, what="pending tree")
        tree.focus()
        await pilot.press("t")  # this layer only
        await wait_for(pilot, lambda: len(tree.root.children) == 3, what="layer-only")
        # select the top layer: file5 deleted, file7 added
        stack = app.screen.stack
        stack.focus()
        await pilot.press("down")
        await wait_for(pilot, lambda: {c.data.name_text for c in tree.root.children
                                       if c.data} == {"file5", "file7"}, what="top layer")
        tree.focus()
        await pilot.press("1")  # hide added
        await wait_for(pilot, lambda: [c.data.name_text for c in tree.root.children
                                       if c.data] == ["file5"], what="filter")
