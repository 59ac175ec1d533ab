"""History editing on a small image: rebase -i with a scripted $EDITOR (pick, reword,
squash, fixup, drop, reorder), squash, split, cherry-pick and revert. Each result is
compared with the tree built by hand from the same edits (equal tree ids: entry by
entry, records included) and, for the -i run, by checkout (tests/treecompare.py)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from layerctl.changeset.write import write_changeset
from layerctl.images import chain, parse_name, resolve, set_tag
from layerctl.store.checkout import checkout
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import lookup
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, Meta
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.treecompare import compare

DIRMETA = Meta(DIR, 0o755, 0, 0, 1_700_000_000_000_000_000)


def _rootfs(top: Path) -> Path:
    root = top / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/conf").write_text("a=1\nb=2\nc=3\nd=4\ne=5\n")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    return root


@pytest.fixture
def base(store, tmp_path) -> str:
    return import_dir(store, _rootfs(tmp_path), "base:1")


def mkdir_app(ed, w) -> None:
    if not ed.is_dir(b"app"):
        ed.set_dir(b"app", DIRMETA)


def e1(ed, w):
    mkdir_app(ed, w)
    put_file(ed, w, b"app/a", b"a1\n")


def e2(ed, w):
    put_file(ed, w, b"app/b", b"b1\n")


def e3(ed, w):
    put_file(ed, w, b"app/a", b"a2\n")


def e4(ed, w):
    put_file(ed, w, b"app/c", b"c\n")


def e5(ed, w):
    ed.delete(b"app/b")


def by_hand(store: Store, base_id: str, *edits) -> object:
    """The tree of `base` with `edits` applied in order, built directly."""
    ed = TreeEditor(store, read_layer(store, base_id).root)
    with store.pack_writer() as w:
        for edit in edits:
            edit(ed, w)
        root = ed.write(w)
        w.finish()
    store.landed()
    return root


def six_layers(store: Store, base_id: str) -> list[str]:
    ids, parent = [], base_id
    for k, edit in enumerate((e1, e2, e3, e4, e5), 1):
        parent = commit_edit(store, parent, edit, message=f"L{k}")
        ids.append(parent)
    set_tag(store, parse_name("six:1"), parent)
    return ids


EDITOR = """\
import os, sys
path = sys.argv[1]
text = open(path).read()
if "# Rebase of" in text:
    open(os.environ["SEEN_TODO"], "w").write(text)
    open(path, "w").write(open(os.environ["TODO"]).read())
else:
    open(path, "w").write(os.environ["NEW_MESSAGE"] + "\\n" + text)
"""


def scripted_editor(tmp_path: Path, todo: str, message: str = "reworded") -> dict:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    (tmp_path / "todo").write_text(todo)
    return {"EDITOR": f"{sys.executable} {script}", "VISUAL": None,
            "TODO": str(tmp_path / "todo"), "SEEN_TODO": str(tmp_path / "seen"),
            "NEW_MESSAGE": message}


def test_rebase_i_pick_reword_reorder_squash(store, base, cli, tmp_path):
    l1, l2, l3, l4, l5 = six_layers(store, base)
    todo = (f"pick {l1[:10]} L1\nreword {l2[:10]}\npick {l4[:10]}\npick {l3[:10]}\n"
            f"squash {l5[:10]}\n")
    cli("rebase", "-i", "six:1", "--base", "base:1", env=scripted_editor(tmp_path, todo))
    seen = (tmp_path / "seen").read_text().splitlines()
    assert seen[:5] == [f"pick {x[:12]} L{k}" for k, x in enumerate((l1, l2, l3, l4, l5), 1)]
    store = Store(str(store.root))
    layers = chain(store, resolve(store, "six:1"))
    assert [la.id for la in layers[:2]] == [base, l1]  # untouched below the first change
    assert len(layers) == 5
    assert layers[2].message == "reworded\nL2" and layers[2].root == read_layer(store, l2).root
    assert layers[3].root == by_hand(store, base, e1, e2, e4)
    assert layers[4].root == by_hand(store, base, e1, e2, e4, e3, e5)
    assert layers[4].message == "L3\n\nL5"
    assert [la.trailers.get("Rebased-From") for la in layers[2:]] == [l2, l4, l3]
    # checkout equality with the tree built by hand
    checkout(store, layers[4].root, tmp_path / "got")
    checkout(store, by_hand(store, base, e1, e3, e4), tmp_path / "want")
    assert compare(tmp_path / "got", tmp_path / "want") == []


def test_rebase_i_drop_and_fixup(store, base, cli, tmp_path):
    l1, l2, l3, l4, l5 = six_layers(store, base)
    todo = f"pick {l1[:10]}\ndrop {l2[:10]}\npick {l3[:10]}\nfixup {l4[:10]}\npick {l5[:10]}\n"
    out = cli("rebase", "-i", "six:1", "--base", "base:1",
              env=scripted_editor(tmp_path, todo)).stdout
    # L5 deletes /app/b, which is gone with L2: nothing left of it, so it is dropped
    assert "is empty after the rebase; dropped" in out
    store = Store(str(store.root))
    layers = chain(store, resolve(store, "six:1"))
    assert len(layers) == 3 and layers[2].message == "L3"
    assert layers[2].root == by_hand(store, base, e1, e3, e4)


def test_rebase_i_empty_todo_changes_nothing(store, base, cli, tmp_path):
    ids = six_layers(store, base)
    out = cli("rebase", "-i", "six:1", "--base", "base:1",
              env=scripted_editor(tmp_path, "# nothing\n")).stdout
    assert "nothing to do" in out and resolve(store, "six:1") == ids[-1]


def test_squash_of_add_then_delete_ships_no_bytes(store, base, cli):
    big = os.urandom(300_000)

    def add(ed, w):
        mkdir_app(ed, w)
        put_file(ed, w, b"app/big.bin", big)

    def conf(ed, w):
        put_file(ed, w, b"etc/conf", b"a=9\n")

    def rm(ed, w):
        ed.delete(b"app/big.bin")

    top = base
    for edit in (add, conf, rm):
        top = commit_edit(store, top, edit)
    set_tag(store, parse_name("sq:1"), top)
    cli("squash", "sq:1", f"{base[:12]}..")
    store = Store(str(store.root))
    layers = chain(store, resolve(store, "sq:1"))
    assert len(layers) == 2 and layers[1].root == read_layer(store, top).root
    tar = io.BytesIO()
    write_changeset(store, layers[0].root, layers[1].root, tar)
    assert b"big.bin" not in tar.getvalue() and len(tar.getvalue()) < 20_000
    assert layers[1].size < 100


def test_squash_middle_range_keeps_layers_above(store, base, cli):
    l1, l2, l3, l4, l5 = six_layers(store, base)
    cli("squash", "six:1", f"{l1[:12]}..{l3[:12]}")
    store = Store(str(store.root))
    layers = chain(store, resolve(store, "six:1"))
    assert [la.root for la in layers] == [read_layer(store, x).root
                                         for x in (base, l1, l3, l4, l5)]
    assert layers[2].message == "L2\n\nL3"
    r = cli("squash", "six:1", f"{layers[3].id[:12]}..", check=False)
    assert r.returncode != 0 and "fewer than two layers" in r.stderr


def test_split_moves_paths_into_their_own_layer(store, base, cli):
    def both(ed, w):
        mkdir_app(ed, w)
        put_file(ed, w, b"app/a", b"a\n")
        put_file(ed, w, b"etc/extra.conf", b"x\n")

    layer = commit_edit(store, base, both, name="sp:1", message="both")
    top = commit_edit(store, layer, e2, name="sp:1")
    cli("split", layer[:12], "--", "/etc")
    store = Store(str(store.root))
    layers = chain(store, resolve(store, "sp:1"))
    assert len(layers) == 4

    def only_etc(ed, w):
        put_file(ed, w, b"etc/extra.conf", b"x\n")

    assert layers[1].root == by_hand(store, base, only_etc)
    assert layers[2].root == read_layer(store, layer).root
    assert layers[3].root == read_layer(store, top).root
    r = cli("split", layers[1].id[:12], "--", "/usr", check=False)
    assert r.returncode != 0 and "changes nothing under usr" in r.stderr
    assert not os.path.exists(store.path("rebase", "state.json"))  # no rebase left behind
    assert resolve(store, "sp:1") == layers[3].id


def _conf_layer(store: Store, base: str, cli, name: str) -> str:
    """A 'config layer': a conf file edit plus an ENV change, committed from a container."""
    cli("create", base, "--name", "cfg")
    merged = Path(cli("mount", "cfg").stdout.strip())
    (merged / "etc/conf").write_text("a=1\nb=2\nc=3\nd=4\ne=50\n")
    (merged / "etc/app.d").mkdir()
    (merged / "etc/app.d/x.conf").write_text("on\n")
    cli("commit", "-c", "ENV FOO=bar", "cfg", name)
    cli("umount", "cfg")
    return resolve(store, name)


def test_cherry_pick_config_layer_onto_sibling(store, base, cli):
    picked = _conf_layer(store, base, cli, "cfg:1")

    def sibling(ed, w):
        put_file(ed, w, b"etc/conf", b"a=10\nb=2\nc=3\nd=4\ne=5\n")
        put_file(ed, w, b"usr/bin/other", b"x\n")

    sib = commit_edit(store, base, sibling, name="sib:1")
    cli("cherry-pick", picked[:12], "--onto", "sib:1")
    store = Store(str(store.root))
    top = read_layer(store, resolve(store, "sib:1"))
    assert top.parent == sib and top.trailers["Rebased-From"] == picked
    assert "FOO=bar" in top.config["config"]["Env"]
    conf = store.read_blob(lookup(store, top.root, b"etc/conf")[1])
    assert conf == b"a=10\nb=2\nc=3\nd=4\ne=50\n"  # both edits, merged line-wise
    assert lookup(store, top.root, b"etc/app.d/x.conf") is not None
    assert lookup(store, top.root, b"usr/bin/other") is not None


def test_cherry_pick_conflict_is_reported_not_overwritten(store, base, cli):
    picked = _conf_layer(store, base, cli, "cfg:1")

    def clash(ed, w):
        put_file(ed, w, b"etc/conf", b"a=1\nb=2\nc=3\nd=4\ne=7\n")

    sib = commit_edit(store, base, clash, name="sib:1")
    r = cli("cherry-pick", picked[:12], "--onto", "sib:1", check=False)
    assert r.returncode == 1 and "both modified: /etc/conf" in r.stderr
    assert resolve(store, "sib:1") == sib
    cli("rebase", "--abort")
    assert resolve(store, "sib:1") == sib
    assert not store.refs_under("refs/rebase/")


def test_cherry_pick_onto_container_keeps_its_changes(store, base, cli):
    picked = commit_edit(store, base, e1, message="add a")
    cli("create", base, "--name", "cp")
    merged = Path(cli("mount", "cp").stdout.strip())
    (merged / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nme:x:1000:1000::/:/bin/sh\n")
    before = cli("status", "cp").stdout
    cli("cherry-pick", picked[:12], "--onto", "cp")
    assert cli("status", "cp").stdout == before
    assert (merged / "app/a").read_text() == "a1\n"
    assert "me:x:1000" in (merged / "etc/passwd").read_text()
    cli("umount", "cp")
    merged = Path(cli("mount", "cp").stdout.strip())  # a remount keeps both
    assert (merged / "app/a").read_text() == "a1\n" and cli("status", "cp").stdout == before
    cli("umount", "cp")


def test_revert_gives_the_tree_without_the_layer(store, base, cli):
    def conf(ed, w):
        put_file(ed, w, b"etc/conf", b"a=1\nb=2\nc=3\nd=4\ne=6\n")

    def tool(ed, w):
        put_file(ed, w, b"usr/bin/c", b"c\n")

    l1 = commit_edit(store, base, lambda ed, w: (e1(ed, w), conf(ed, w)), message="one")
    l2 = commit_edit(store, l1, tool, name="rv:1", message="two")
    out = cli("revert", l1[:12]).stdout
    assert "revert of rv:1" in out
    store = Store(str(store.root))
    top = read_layer(store, resolve(store, "rv:1"))
    assert top.parent == l2 and top.summary == 'Revert "one"'

    assert top.root == by_hand(store, base, tool)  # /app and the conf edit undone


def test_revert_conflict_is_reported(store, base, cli):
    l1 = commit_edit(store, base, e1, message="one")
    l2 = commit_edit(store, l1, e3, name="rv:1", message="two")
    r = cli("revert", l1[:12], "--onto", "rv:1", check=False)
    assert r.returncode == 1
    # L1 made /app; reverting it deletes /app, in which L2 changed a file
    assert "deleted by layer, modified by new base: /app (new base changed /app/a)" in r.stderr
    assert resolve(store, "rv:1") == l2
    cli("rebase", "--abort")


def test_rebase_i_edit_stops_and_amends(store, base, cli, tmp_path):
    l1, l2, l3, l4, l5 = six_layers(store, base)
    todo = f"pick {l1[:10]}\npick {l2[:10]}\nedit {l3[:10]}\npick {l4[:10]}\npick {l5[:10]}\n"
    r = cli("rebase", "-i", "six:1", "--base", "base:1", env=scripted_editor(tmp_path, todo),
            check=False)
    assert r.returncode == 1 and "stopped to edit layer" in r.stderr
    container = [w.strip(",") for w in r.stderr.split() if w.startswith("rebase-")][0]
    assert "amend in container" in cli("status", container).stdout.splitlines()[0]
    assert resolve(store, "six:1") == l5  # nothing moved yet
    merged = Path(cli("mount", container).stdout.strip())
    assert (merged / "app/a").read_text() == "a2\n"
    (merged / "app/a").write_text("a3\n")
    cli("umount", container)
    cli("rebase", "--continue")
    store = Store(str(store.root))
    layers = chain(store, resolve(store, "six:1"))
    assert [la.id for la in layers[:3]] == [base, l1, l2] and len(layers) == 6
    assert layers[3].trailers["Rebased-From"] == l3 and layers[3].message == "L3"
    assert store.read_blob(lookup(store, layers[3].root, b"app/a")[1]) == b"a3\n"
    assert store.read_blob(lookup(store, layers[5].root, b"app/a")[1]) == b"a3\n"
    assert lookup(store, layers[5].root, b"app/b") is None


def test_cherry_pick_conflict_with_container_changes_resolved(store, base, cli):
    def conf(ed, w):
        put_file(ed, w, b"etc/conf", b"a=1\nb=2\nc=3\nd=4\ne=from-layer\n")

    picked = commit_edit(store, base, conf, message="conf")
    cli("create", base, "--name", "cq")
    merged = Path(cli("mount", "cq").stdout.strip())
    (merged / "etc/conf").write_text("a=1\nb=2\nc=3\nd=4\ne=mine\n")
    (merged / "etc/other").write_text("mine too\n")
    cli("umount", "cq")
    before = cli("status", "cq").stdout
    r = cli("cherry-pick", picked[:12], "--onto", "cq", check=False)
    assert r.returncode == 1 and "both modified: /etc/conf" in r.stderr
    assert "pending changes" in r.stderr or "replaying layer" in r.stderr
    container = [w.strip(",") for w in r.stderr.split() if w.startswith("rebase-")][0]
    fix = Path(cli("mount", container).stdout.strip())
    assert "<<<<<<< new base\ne=from-layer\n=======\ne=mine\n>>>>>>>" in (
        fix / "etc/conf").read_text()
    (fix / "etc/conf").write_text("a=1\nb=2\nc=3\nd=4\ne=both\n")
    cli("umount", container)
    cli("rebase", "--continue")
    from layerctl.containers.state import base as container_base
    from layerctl.containers.state import resolve as find

    store = Store(str(store.root))
    assert container_base(store, find(store, "cq")) == picked  # the layer is committed
    assert cli("status", "cq").stdout == before  # the same paths pending, resolved content
    merged = Path(cli("mount", "cq").stdout.strip())
    assert (merged / "etc/conf").read_text() == "a=1\nb=2\nc=3\nd=4\ne=both\n"
    assert (merged / "etc/other").read_text() == "mine too\n"
    cli("umount", "cq")


def test_container_rebase_takes_its_own_image_as_the_old_base(store, base, cli):
    """A container made from an image (not from layerctl commits) has that image as its
    base: only its pending changes move, the image's layers are not replayed."""
    commit_edit(store, base, e1, name="two:1", message="part of the image")

    def newer(ed, w):
        put_file(ed, w, b"etc/newfile", b"n\n")

    nb = commit_edit(store, base, newer, name="nb:1")
    cli("create", "two:1", "--name", "cr")
    merged = Path(cli("mount", "cr").stdout.strip())
    (merged / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    cli("umount", "cr")
    cli("rebase", "cr", "--onto", "nb:1")
    from layerctl.containers.state import base as container_base
    from layerctl.containers.state import resolve as find

    store = Store(str(store.root))
    assert container_base(store, find(store, "cr")) == nb
    merged = Path(cli("mount", "cr").stdout.strip())
    assert not (merged / "app").exists() and (merged / "etc/newfile").exists()
    assert (merged / "etc/passwd").read_text() == "root:x:0:0::/root:/bin/bash\n"
    cli("umount", "cr")


def test_conflict_on_a_non_utf8_name_resolves(store, base, cli):
    name = b"etc/caf\xe9.conf"

    def ours(ed, w):
        put_file(ed, w, name, b"x=1\n")

    def mine(ed, w):
        put_file(ed, w, name, b"x=2\n")

    def theirs(ed, w):
        put_file(ed, w, name, b"x=3\n")

    start = commit_edit(store, base, ours, name="nu:1")
    picked = commit_edit(store, start, theirs)
    commit_edit(store, start, mine, name="nu:1")
    r = cli("cherry-pick", picked[:12], "--onto", "nu:1", check=False)
    assert r.returncode == 1 and 'both modified: "/etc/caf\\351.conf"' in r.stderr
    container = [w.strip(",") for w in r.stderr.split() if w.startswith("rebase-")][0]
    fix = Path(cli("mount", container).stdout.strip())
    path = os.fsdecode(os.fsencode(fix) + b"/" + name)
    assert b"<<<<<<<" in Path(path).read_bytes()
    r = cli("rebase", "--continue", check=False)
    assert r.returncode != 0 and "still has conflict markers" in r.stderr
    Path(path).write_bytes(b"x=4\n")
    cli("umount", container)
    cli("rebase", "--continue")
    store = Store(str(store.root))
    top = read_layer(store, resolve(store, "nu:1"))
    assert store.read_blob(lookup(store, top.root, name)[1]) == b"x=4\n"
