"""Nothing is lost: every ref move is in a (git-readable) reflog, `IMAGE@{n}` names
old values, and `layerctl undo` brings back the exact state before each destructive
command (refs, checkouts, a container's files and `status`), also after kill -9."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.layerhelpers import KILLED, container_names
from tests.treecompare import compare
from tests.undohelpers import Box, fscks, git, make_box

pytestmark = pytest.mark.needs_root


@pytest.fixture
def box(cli, store_root: Path, tmp_path: Path) -> Iterator[Box]:  # noqa: ANN001
    with make_box(cli, store_root, tmp_path) as b:
        yield b


def test_undo_reset_brings_back_every_pending_change(box: Box) -> None:
    box.edit()
    before = box.state()
    assert before[1].count("\n") >= 8
    box.cli("reset", "c1")
    assert box.cli("status", "c1").stdout == ""
    out = box.cli("undo").stdout
    assert "undid: layerctl reset c1" in out
    box.assert_state(before)
    assert box.cli("fsck").returncode == 0


def test_undo_reset_hardlinks_opaque_dirs_xattrs_fifos(box: Box) -> None:
    box.edit_more()
    before = box.state()
    assert "C /etc/conf.d" in before[1] and "A /opt/two" in before[1]
    box.cli("reset", "c1")
    box.cli("undo")
    box.assert_state(before)
    tree = before[2]
    assert tree[b"opt/two"].hardlink is not None  # still one inode, as before


@pytest.mark.parametrize("edits", ["edit", "edit_more"])
def test_undo_reset_and_stash_on_vfs(cli, store_root: Path, tmp_path: Path,  # noqa: ANN001
                                     edits: str) -> None:
    with make_box(cli, store_root, tmp_path, "vfs") as b:
        getattr(b, edits)()
        before = b.state()
        b.cli("reset", "c1")
        assert b.cli("status", "c1").stdout == ""
        b.cli("undo")
        b.assert_state(before)
        b.cli("stash", "push", "c1")
        b.cli("stash", "pop", "c1")
        b.assert_state(before)


def test_undo_reset_to_another_layer(box: Box) -> None:
    (Path(box.merged) / "etc" / "hostname").write_text("first\n")
    first = box.cli("commit", "-q", "c1").stdout.strip()
    box.edit()
    before = box.state()
    box.cli("reset", "c1", "small")
    assert box.refs()[_cref(box)] != before[0][_cref(box)]
    box.cli("undo")
    box.assert_state(before)
    assert box.refs()[_cref(box)] == first


def _cref(box: Box) -> str:
    return next(r for r in box.refs() if r.startswith("refs/containers/"))


def test_undo_restore(box: Box) -> None:
    box.edit()
    before = box.state()
    box.cli("restore", "c1", "/etc/motd", "/srv")
    assert "C /etc/motd\n" not in box.cli("status", "c1").stdout
    box.cli("undo")
    box.assert_state(before)


def test_undo_commit_with_tag(box: Box) -> None:
    box.edit()
    before = box.state()
    layer = box.cli("commit", "-q", "-m", "work", "c1", "app:v1").stdout.strip()
    assert box.cli("status", "c1").stdout == ""
    assert box.refs()["refs/images/app/_tags/v1"] == layer
    box.cli("undo")
    box.assert_state(before)  # no app:v1, the base back, every change pending again
    # the layer is not lost: the reflog names it
    assert box.cli("checkout", "app:v1@{1}", box.tmp / "co").returncode == 0


def test_undo_tag_and_rmi(box: Box) -> None:
    box.cli("commit", "--allow-empty", "-q", "c1", "small:next")
    original = box.checkout("small", "orig")
    before = box.refs()
    box.cli("tag", "small:next", "small")  # moves small:latest
    assert box.refs() != before
    box.cli("undo")
    assert box.refs() == before
    box.cli("rmi", "-f", "small")
    assert "refs/images/small/_tags/latest" not in box.refs()
    box.cli("undo")
    assert box.refs() == before
    assert compare(original, box.checkout("small", "after")) == []


def test_undo_load_retag(box: Box) -> None:
    archive = box.tmp / "small.tar"
    box.cli("save", "-q", "-o", archive, "small")
    (Path(box.merged) / "etc" / "hostname").write_text("changed\n")
    box.cli("commit", "-q", "c1", "small")  # small:latest moves to the new layer
    before = box.state()
    box.cli("load", "-q", "-i", archive)  # ...and load moves it back
    assert box.refs()["refs/images/small/_tags/latest"] != before[0][
        "refs/images/small/_tags/latest"]
    box.cli("undo")
    box.assert_state(before)


def test_undo_again_goes_further_back(box: Box) -> None:
    start = box.refs()
    box.cli("tag", "small", "x:1")
    box.cli("tag", "small", "x:2")
    box.cli("undo")
    assert "refs/images/x/_tags/2" not in box.refs()
    assert "refs/images/x/_tags/1" in box.refs()
    box.cli("undo")
    assert box.refs() == start


def test_undo_refuses_when_a_ref_moved_outside_the_journal(box: Box) -> None:
    box.cli("tag", "small", "x:1")
    other = box.cli("commit", "--allow-empty", "-q", "c1").stdout.strip()
    # moved behind layerctl's back: undo cannot know what to restore
    git(box.root, "update-ref", "refs/images/x/_tags/1", other)
    box.cli("undo")  # the empty commit: moves the container base back
    before = box.refs()
    r = box.cli("undo", check=False)
    assert r.returncode != 0
    assert "x:1 was moved since" in r.stderr and "Traceback" not in r.stderr
    assert box.refs() == before


def test_undo_dry_run_changes_nothing(box: Box) -> None:
    box.edit()
    box.cli("reset", "c1")
    after = box.state()
    out = box.cli("undo", "--dry-run").stdout
    assert "would undo: layerctl reset c1" in out
    box.assert_state(after)


def test_nothing_to_undo(cli, store_root: Path) -> None:
    r = cli("undo", check=False)
    assert r.returncode != 0 and "nothing to undo" in r.stderr


# -- reflog --------------------------------------------------------------------------


def test_reflog_is_git_readable_and_names_old_values(box: Box) -> None:
    first = box.refs()["refs/images/small/_tags/latest"]
    (Path(box.merged) / "etc" / "hostname").write_text("second\n")
    second = box.cli("commit", "-q", "-m", "two", "c1", "small").stdout.strip()
    box.cli("rmi", "-f", "small")
    box.cli("undo")
    r = git(box.root, "reflog", "show", "--format=%H %gs", "refs/images/small/_tags/latest")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(second) and "undo" in lines[0]
    assert any(line.startswith(first) for line in lines)
    out = box.cli("reflog", "small").stdout.splitlines()
    assert out[0] == f"{second[:12]} small@{{0}}: undo: layerctl rmi -f small"
    assert any("rmi: small:latest (deleted)" in line for line in out)
    # small@{n} wherever a layer is taken
    assert _layer(box, "small@{3}") == first
    assert _layer(box, "small@{0}~1") == first
    r = box.cli("inspect", "small@{1}", check=False)
    assert r.returncode != 0 and "deleted at that point" in r.stderr
    assert git(box.root, "fsck", "--strict").returncode == 0


def _layer(box: Box, ref: str) -> str:
    import json

    return json.loads(box.cli("inspect", ref).stdout)[0]["Layerctl"]["Layer"]


def test_container_reflog_and_base_at_n(box: Box) -> None:
    first = box.refs()[_cref(box)]
    (Path(box.merged) / "etc" / "hostname").write_text("second\n")
    second = box.cli("commit", "-q", "c1").stdout.strip()
    out = box.cli("reflog", "c1").stdout.splitlines()
    assert out[0] == f"{second[:12]} c1@{{0}}: commit: container c1"
    assert out[1].startswith(f"{first[:12]} c1@{{1}}: create:")
    assert _layer(box, "c1@{1}") == first


def test_undo_of_create_leaves_a_working_container(box: Box) -> None:
    box.cli("create", "--name", "c2", "small")
    out = box.cli("undo").stdout
    assert "was created" in out
    assert box.cli("status", "c2").returncode == 0
    fscks(box)


def test_undo_of_rm_does_not_make_a_container_without_files(box: Box) -> None:
    box.cli("create", "--name", "c2", "small")
    box.cli("rm", "c2")
    out = box.cli("undo").stdout
    assert "was removed" in out
    assert "c2" not in container_names(box.cli)
    fscks(box)


def test_concurrent_moves_are_each_logged_once_in_order(box: Box) -> None:
    """Logging happens under the ref's lock: racing writers give a reflog whose lines
    chain (each old value is the previous line's new one), one line per move."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from layerctl.store.journal import read_reflog

    other = box.cli("commit", "--allow-empty", "-q", "c1").stdout.strip()
    small = box.refs()["refs/images/small/_tags/latest"]
    script = ("import sys; from layerctl.store.repo import Store; "
              "from layerctl.images import parse_name, set_tag; s = Store(sys.argv[1]); "
              "[set_tag(s, parse_name('x:1'), sys.argv[2 + i % 2]) for i in range(20)]")

    def run(k: int) -> int:
        first, second = (small, other) if k % 2 else (other, small)
        return subprocess.run([sys.executable, "-c", script, str(box.root), first, second],
                              capture_output=True).returncode

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(run, range(4))) == [0, 0, 0, 0]
    log = read_reflog(str(box.root), "refs/images/x/_tags/1")
    assert len(log) >= 20
    assert log[0].old is None
    for prev, entry in zip(log, log[1:], strict=False):
        assert entry.old == prev.new and entry.new != entry.old
    assert log[-1].new == box.refs()["refs/images/x/_tags/1"]
    journal = (box.root / "undo" / "journal").read_text().splitlines()
    assert sum("\trefs/images/x/_tags/1\t" in line for line in journal) == len(log)


def test_undo_of_a_busy_container_is_one_line(box: Box) -> None:
    from layerctl.containers.state import locked, resolve
    from layerctl.store.repo import Store

    box.edit()
    box.cli("reset", "c1")
    store = Store(str(box.root))
    try:
        with locked(store, resolve(store, "c1")):
            r = box.cli("undo", check=False)
    finally:
        store.close()
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    box.cli("undo")  # once free, the undo (begun, not done) is finished
    assert "C /etc/motd\n" in box.cli("status", "c1").stdout


# -- crashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["undo.snapshot-written", "undo.snapshot-recorded"])
def test_kill_during_reset_loses_nothing(box: Box, point: str) -> None:
    box.edit()
    before = box.state()
    r = box.cli("reset", "c1", check=False, env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED
    fscks(box)
    box.cli("reset", "c1")
    box.cli("undo")
    box.assert_state(before)


@pytest.mark.parametrize("point", ["undo.before-apply", "undo.apply-entry#3",
                                   "undo.move-ref", "undo.before-done"])
def test_kill_during_undo_then_undo_again(box: Box, point: str) -> None:
    box.edit()
    before = box.state()
    box.cli("reset", "c1", "small")
    if point == "undo.move-ref":  # only an undo that moves a ref reaches it
        box.cli("undo")
        box.cli("tag", "small", "x:1")
        before = box.state()
        box.cli("rmi", "x:1")
    r = box.cli("undo", check=False, env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED
    fscks(box)
    box.cli("undo")  # finishes the undo the kill cut short
    box.assert_state(before)
    fscks(box)


def test_kill_after_logging_a_move_that_never_landed(box: Box) -> None:
    before = box.refs()
    r = box.cli("tag", "small", "x:1", check=False, env={"LAYERCTL_CRASH_AT": "ref.logged"})
    assert r.returncode == KILLED
    assert box.refs() == before
    fscks(box)
    box.cli("undo")  # nothing to move back: the tag never moved
    assert box.refs() == before


# -- the TUI's z ----------------------------------------------------------------------


def test_tui_z_undoes_a_reset(store_root: Path, monkeypatch: pytest.MonkeyPatch,
                              tmp_path: Path) -> None:
    import asyncio

    from layerctl import demo
    from layerctl.containers import api
    from layerctl.store.repo import Store
    from layerctl.tui.app import LayerctlApp
    from layerctl.tui.screens.dialogs import ConfirmDialog
    from tests.layerhelpers import release_containers
    from tests.tuihelpers import SIZE, changes_of, wait_for

    monkeypatch.setenv("LAYERCTL_CONFIG", str(tmp_path / "config.toml"))
    store = Store(str(store_root))
    layers = demo.build_image(store)
    c, _ = api.create(store, demo.IMAGE, name="web")
    for name in ("a.txt", "b.txt", "c.txt"):
        demo.write_pending(store, c.name, name, f"{name} content\n")
    before = api.status(store, "web")

    async def run() -> None:
        app = LayerctlApp(store, container="web")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: len(changes_of(app).changes) == 3)
            stack = app.screen.stack
            stack.focus()
            stack.move_cursor(row=stack.get_row_index(layers[1]))
            await pilot.press("R")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_for(pilot, lambda: not changes_of(app).changes, what="reset")
            await pilot.press("z")
            await wait_for(pilot, lambda: len(changes_of(app).changes) == 3, what="undo")

    try:
        asyncio.run(run())
        assert store.ref(api.resolve(store, "web").ref) == layers[-1]
        assert api.status(store, "web") == before
    finally:
        release_containers(store)


# -- pull re-tag -----------------------------------------------------------------------


@pytest.mark.needs_tool("docker-registry")
def test_undo_pull_retag(box: Box, registry: object) -> None:
    ref = f"{registry.host}/app:1"
    box.cli("push", "-q", "small", ref)
    box.cli("pull", "-q", ref)
    (Path(box.merged) / "etc" / "hostname").write_text("newer\n")
    box.cli("commit", "-q", "c1", "small:2")
    box.cli("push", "-q", "small:2", ref)
    before = box.state()
    pulled_before = _layer(box, ref)
    box.cli("pull", "-q", ref)  # the tag moves to the newer image
    assert _layer(box, ref) != pulled_before
    box.cli("undo")
    box.assert_state(before)
    assert _layer(box, ref) == pulled_before


def test_undo_squash_and_cherry_pick(box: Box) -> None:
    # history editing moves tags through the one ref path: undo puts them back
    box.edit()
    box.cli("commit", "-q", "-m", "one", "c1", "app:1")
    (Path(box.merged) / "etc" / "two").write_text("2\n")
    box.cli("commit", "-q", "-m", "two", "c1", "app:1")
    before = box.state()
    original = box.checkout("app:1", "orig")
    box.cli("squash", "app:1")
    assert box.refs()["refs/images/app/_tags/1"] != before[0]["refs/images/app/_tags/1"]
    box.cli("undo")
    box.assert_state(before)
    assert compare(original, box.checkout("app:1", "after")) == []


def test_undo_rebase_of_a_container_brings_back_its_pending_changes(box: Box) -> None:
    # the container's pending changes are snapshotted before the rebase moves it
    box.cli("commit", "--allow-empty", "-q", "-m", "new base", "c1", "small:2")
    box.cli("reset", "c1", "small")
    box.edit()
    before = box.state()
    box.cli("rebase", "c1", "--onto", "small:2")
    assert box.refs() != before[0]  # the container's base moved
    box.cli("undo")
    box.assert_state(before)
