"""The Files-pane model (layerctl.presentation.browse), tested without any UI."""

from __future__ import annotations

import time

import pytest

from layerctl import demo
from layerctl.presentation import browse
from layerctl.presentation.browse import CHANGE_KINDS, LayerBrowser, PendingBrowser
from layerctl.store.diff import diff
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, Meta
from tests.layerhelpers import commit_edit, put_file


@pytest.fixture
def layers(store):
    return demo.build_image(store)


def names(entries):
    return [(e.status, e.name_text) for e in entries]


def test_demo_image_is_the_union_picture(store, layers):
    assert len(layers) == 3
    assert demo.merged_names(store, layers[-1]) == [f"file{i}" for i in (1, 2, 3, 4, 6, 7)]
    assert demo.build_image(store) == layers  # fixed times: same ids every run


def test_top_layer_annotated_against_the_one_below(store, layers):
    b = LayerBrowser.for_layer(store, layers[-1])
    assert names(b.children()) == [
        ("", "file1"), ("", "file2"), ("", "file3"), ("", "file4"),
        ("D", "file5"), ("", "file6"), ("A", "file7"),
    ]
    # this-layer-only and per-kind filters
    assert names(b.children(kinds=CHANGE_KINDS)) == [("D", "file5"), ("A", "file7")]
    assert names(b.children(kinds={"A"})) == [("A", "file7")]
    # the base layer: everything added
    base = LayerBrowser.for_layer(store, layers[0])
    assert {e.status for e in base.children()} == {"A"}


def test_columns_and_sizes(store, layers):
    b = LayerBrowser.for_layer(store, layers[-1])
    e = b.entry(b"file7")
    assert e.mode_text == "-rw-r--r--"
    assert e.owner_text == "0:0"
    assert b.size(e) == len(demo.LAYERS[2][2]["file7"])


@pytest.fixture
def tree(store):
    from layerctl.images import parse_name, set_tag
    from layerctl.importer import commit_root
    from layerctl.store.edit import TreeEditor

    editor = TreeEditor(store, None)
    with store.pack_writer() as writer:
        editor.set_dir(b"etc", Meta(DIR, 0o755))
        put_file(editor, writer, b"etc/hostname", b"box\n")
        put_file(editor, writer, b"etc/passwd", b"root:x:0:0\n" * 50)
        editor.set_dir(b"usr", Meta(DIR, 0o755))
        editor.set_dir(b"usr/bin", Meta(DIR, 0o755))
        put_file(editor, writer, b"usr/bin/tool", b"\x7fELF\0\0" + b"x" * 5000, mode=0o755)
        put_file(editor, writer, b"usr/bin/script", b"#!/bin/sh\necho hi\n", mode=0o755)
        editor.set_dir(b"var", Meta(DIR, 0o755))
        root = editor.write(writer)
        writer.finish()
    store.landed()
    base = commit_root(store, root, None, None, {}, "T <t@x>", "base", "test", 0)
    set_tag(store, parse_name("tree:1"), base)

    def edit(editor, writer):
        put_file(editor, writer, b"etc/hostname", b"changed\n")
        put_file(editor, writer, b"etc/passwd", b"root:x:0:0\n" * 50, mode=0o600)
        editor.delete(b"usr/bin/tool")
        editor.set_dir(b"opt", Meta(DIR, 0o755))
        put_file(editor, writer, b"opt/new.py", b"print('hello')\n")

    top = commit_edit(store, "tree:1", edit, name="tree:2")
    return base, top


def test_directories_lazily_and_dirty_marks(store, tree):
    base, top = tree
    b = LayerBrowser.for_layer(store, top)
    root = {e.name_text: e for e in b.children()}
    assert root["opt"].status == "A" and root["opt"].dirty
    assert root["etc"].status == "" and root["etc"].dirty  # changes below, dir itself same
    assert root["var"].status == "" and not root["var"].dirty
    assert names(b.children(b"etc")) == [("C", "hostname"), ("C", "passwd")]
    assert names(b.children(b"usr/bin")) == [("", "script"), ("D", "tool")]
    # this-layer-only keeps the directories leading to changes, drops clean ones
    assert [e.name_text for e in b.children(kinds=CHANGE_KINDS)] == ["etc", "opt", "usr"]
    # the annotated tree agrees with the store's diff
    layer, parent = read_layer(store, top), read_layer(store, base)
    expected = {(c.path, c.status) for c in diff(store, parent.root, layer.root)}
    seen = set()
    stack = [b""]
    while stack:
        for e in b.children(stack.pop(), kinds=CHANGE_KINDS):
            if e.status:
                seen.add((e.path, e.status))
            if e.is_dir:
                stack.append(e.path)
    assert seen == expected


def test_sort_by_size_and_search(store, tree):
    _, top = tree
    b = LayerBrowser.for_layer(store, top)
    by_size = [e.name_text for e in b.children(sort=browse.BY_SIZE)]
    assert by_size[0] == "etc"  # 550 bytes of passwd beats the rest
    assert b.size(b.entry(b"usr")) == len(b"#!/bin/sh\necho hi\n")
    found = [e.path_text for e in b.search("o")]
    assert found == ["/opt", "/etc/hostname", "/usr/bin/tool"]  # breadth first
    assert [e.path_text for e in b.search("TOOL")] == ["/usr/bin/tool"]


def test_previews_in_words(store, tree):
    _, top = tree
    b = LayerBrowser.for_layer(store, top)
    p = b.preview(b.entry(b"opt/new.py"))
    assert p.kind == "text" and "print('hello')" in p.text and p.syntax_hint == "new.py"
    d = b.preview(b.entry(b"etc/hostname"), diff=True)
    assert d.kind == "diff" and "-box" in d.text and "+changed" in d.text
    m = b.preview(b.entry(b"etc/passwd"), diff=True)
    assert m.kind == "info" and "mode 0644→0600" in m.text
    gone = b.preview(b.entry(b"usr/bin/tool"))
    assert gone.kind == "binary" and "ELF" in gone.text and "deleted" in gone.title
    assert b.preview(b.entry(b"var"), diff=True).text == "unchanged in this layer"


def test_pending_browser_overlays_changes(store, tree):
    from layerctl.store.diff import ADDED, CHANGED, DELETED, Change

    _, top = tree
    layer = read_layer(store, top)
    hostname = LayerBrowser(store, layer.root, None).entry(b"etc/hostname")
    changes = [
        Change(b"etc/hostname", CHANGED, old=hostname.meta, new=hostname.meta,
               old_blob=hostname.blob, new_blob=b"\x01" * 20),
        Change(b"srv", ADDED, new=Meta(DIR, 0o755)),
        Change(b"srv/www.txt", ADDED, new=Meta("-", 0o644, size=3), new_blob=b"\x02" * 20),
        Change(b"usr", DELETED, old=Meta(DIR, 0o755)),
    ]
    content = {b"etc/hostname": b"edited\n", b"srv/www.txt": b"hi\n"}
    p = PendingBrowser(store, layer.root, changes, lambda path, limit: content[path][:limit])
    assert names(p.children(kinds=CHANGE_KINDS)) == [
        ("", "etc"), ("A", "srv"), ("D", "usr")]
    assert names(p.children(b"srv")) == [("A", "www.txt")]
    assert {e.status for e in p.children(b"usr/bin")} == {"D"}  # under a deleted dir
    d = p.preview(p.entry(b"etc/hostname"), diff=True)
    assert "-changed" in d.text and "+edited" in d.text
    assert p.preview(p.entry(b"srv/www.txt")).text == "hi"


def test_wide_scale_listing_is_lazy(store):
    """100k entries: listing the root or one directory reads only that directory."""
    from layerctl.importer import commit_root
    from layerctl.store.edit import TreeEditor

    editor = TreeEditor(store, None)
    with store.pack_writer() as writer:
        blob = writer.add(3, b"x")
        for d in range(100):
            editor.set_dir(b"d%03d" % d, Meta(DIR, 0o755))
            for f in range(1000):
                editor.set_file(b"d%03d/f%04d" % (d, f), Meta("-", 0o644, size=1), blob)
        root = editor.write(writer)
        writer.finish()
    store.landed()
    layer = commit_root(store, root, None, None, {}, "T <t@x>", "big", "test", 0)
    reads = []
    real_read_blob = store.read_blob
    store.read_blob = lambda sha: reads.append(sha) or real_read_blob(sha)
    t0 = time.perf_counter()
    b = LayerBrowser.for_layer(store, layer)
    top = b.children()
    inner = b.children(b"d050")
    elapsed = time.perf_counter() - t0
    assert len(top) == 100 and len(inner) == 1000
    # records read: the root's, each top-level dir's (its first line) and d050's
    assert len(reads) <= 102, f"{len(reads)} records read"
    assert elapsed < 3.0, f"listing took {elapsed:.2f}s"
