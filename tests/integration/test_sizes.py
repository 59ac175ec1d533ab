"""Image and layer sizes, as Docker defines them, the same in every front.

A layer's size (`history` SIZE) is the regular-file content its changeset adds or
changes, each hardlink group once (a metadata-only change ships the whole file);
an image's size (`images` SIZE, `inspect` Size) is the sum of its layers' sizes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from layerctl.store.layers import read_layer
from layerctl.store.meta import Meta
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.tuihelpers import sync

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")


def _known_image(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "one").write_bytes(b"1" * 1000)
    (src / "two").write_bytes(b"2" * 2000)
    os.link(src / "two", src / "two-again")  # one hardlink group: counted once
    os.symlink("one", src / "link")  # not a regular file
    import_dir(store, src, "sized:base")

    def edit(editor, writer):
        put_file(editor, writer, b"two", b"m" * 500)  # rewritten smaller
        put_file(editor, writer, b"new", b"n" * 300)  # added
        meta, blob = editor.get(b"one")  # chmod only: the whole file ships again
        editor.set_file(b"one", Meta(meta.kind, 0o600, meta.uid, meta.gid, meta.mtime_ns,
                                     meta.size), blob)
        editor.delete(b"link")  # a deletion ships no content

    commit_edit(store, "sized:base", edit, name="sized:1")


@pytest.fixture
def sized(store_root: Path, tmp_path: Path) -> Store:
    s = Store(str(store_root))
    _known_image(s, tmp_path)
    yield s
    s.close()


BASE, TOP = 3000, 500 + 300 + 1000


def test_images_history_inspect_follow_dockers_definitions(sized, cli):
    rows = {line.split()[0] + ":" + line.split()[1]: line.split()[-1]
            for line in cli("images").stdout.splitlines()[1:]}
    assert rows == {"sized:base": "3kB", "sized:1": "4.8kB"}
    header, *lines = cli("history", "sized:1").stdout.splitlines()
    start, end = header.index("SIZE"), header.index("COMMENT")
    history = [line[start:end].strip() for line in lines]
    assert history == ["1.8kB", "3kB"]
    image = json.loads(cli("inspect", "sized:1").stdout)[0]
    assert image["Size"] == BASE + TOP
    assert RFC3339_NANO.match(image["Created"]), image["Created"]


def test_sizes_do_not_trust_the_size_trailer(sized):
    """The test helper records the parent's Size trailer on its commit (as an older
    layerctl recorded other figures): the size comes from the trees all the same."""
    from layerctl.images import chain, image_size, layer_size, resolve

    layers = chain(sized, resolve(sized, "sized:1"))
    assert layers[-1].size == BASE  # the trailer says something else
    assert [layer_size(sized, layer) for layer in layers] == [BASE, TOP]
    assert image_size(sized, layers) == BASE + TOP
    assert read_layer(sized, layers[-1].id).size == BASE


def test_container_inspect_created_is_rfc3339_nano(sized, cli):
    cli("create", "--driver", "vfs", "--name", "sz", "sized:1")
    try:
        data = json.loads(cli("inspect", "sz").stdout)[0]
        assert RFC3339_NANO.match(data["Created"]), data["Created"]
    finally:
        cli("rm", "-f", "sz")


@sync
async def test_tui_shows_the_same_sizes(sized):
    from textual.widgets import DataTable

    from layerctl.tui.app import LayerctlApp
    from layerctl.tui.screens.images import ImagesScreen
    from layerctl.tui.widgets.layers import LayerStack

    app = LayerctlApp(sized, image="sized:1")
    async with app.run_test(size=(160, 48)) as pilot:
        stack = app.screen.query_one(LayerStack)
        for _ in range(100):
            if stack.row_count == 2:
                break
            await pilot.pause(0.05)
        sizes = [str(stack.get_row_at(i)[-1]) for i in range(stack.row_count)]
        assert sizes == ["1.8kB", "3kB"]
        await pilot.press("i")
        for _ in range(100):
            if isinstance(app.screen, ImagesScreen) and app.screen.query_one(DataTable).row_count:
                break
            await pilot.pause(0.05)
        table = app.screen.query_one(DataTable)
        for _ in range(100):
            if table.row_count == 2:
                break
            await pilot.pause(0.05)
        shown = {str(table.get_row_at(i)[0]) + ":" + str(table.get_row_at(i)[1]):
                 str(table.get_row_at(i)[-1]) for i in range(table.row_count)}
        assert shown == {"sized:base": "3kB", "sized:1": "4.8kB"}
