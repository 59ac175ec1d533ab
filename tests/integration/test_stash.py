"""`layerctl stash`: a container's pending changes saved and cleared, listed, and
written back exactly (pop, apply), refused where they would clobber, and never
lost to kill -9."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.layerhelpers import KILLED
from tests.undohelpers import Box, fscks, make_box

pytestmark = pytest.mark.needs_root


@pytest.fixture
def box(cli, store_root: Path, tmp_path: Path) -> Iterator[Box]:  # noqa: ANN001
    with make_box(cli, store_root, tmp_path) as b:
        yield b


def test_push_list_pop_round_trip(box: Box) -> None:
    box.edit()
    before = box.state()
    out = box.cli("stash", "push", "-m", "my work", "c1").stdout
    assert "stash@{0}" in out
    assert box.cli("status", "c1").stdout == ""
    listed = box.cli("stash", "list", "c1").stdout.splitlines()
    assert len(listed) == 1 and listed[0].startswith("stash@{0}: ") and "my work" in listed[0]
    box.cli("stash", "pop", "c1")
    box.assert_state(before)
    assert box.cli("stash", "list", "c1").stdout == ""
    fscks(box)


def test_apply_keeps_the_entry_and_drop_is_undoable(box: Box) -> None:
    (Path(box.merged) / "etc" / "motd").write_text("stashed\n")
    before = box.state()
    box.cli("stash", "push", "c1")
    box.cli("stash", "apply", "c1")
    box.assert_state(before)
    assert len(box.cli("stash", "list", "c1").stdout.splitlines()) == 1
    box.cli("reset", "c1")
    box.cli("stash", "drop", "c1")
    assert box.cli("stash", "list", "c1").stdout == ""
    box.cli("undo")
    assert len(box.cli("stash", "list", "c1").stdout.splitlines()) == 1


def test_newest_first_and_by_index(box: Box) -> None:
    m = Path(box.merged)
    (m / "etc" / "motd").write_text("first\n")
    box.cli("stash", "push", "-m", "first", "c1")
    (m / "etc" / "hostname").write_text("second\n")
    box.cli("stash", "push", "-m", "second", "c1")
    listed = box.cli("stash", "list", "c1").stdout.splitlines()
    assert "second" in listed[0] and "first" in listed[1]
    box.cli("stash", "pop", "c1", "1")
    assert (m / "etc" / "motd").read_text() == "first\n"
    assert (m / "etc" / "hostname").read_text() == "base\n"
    assert "second" in box.cli("stash", "list", "c1").stdout


def test_pop_refuses_over_pending_changes_to_the_same_path(box: Box) -> None:
    m = Path(box.merged)
    (m / "etc" / "motd").write_text("stashed\n")
    box.cli("stash", "push", "c1")
    (m / "etc" / "motd").write_text("newer\n")
    before = box.state()
    r = box.cli("stash", "pop", "c1", check=False)
    assert r.returncode != 0 and "/etc/motd" in r.stderr and "Traceback" not in r.stderr
    box.assert_state(before)
    assert len(box.cli("stash", "list", "c1").stdout.splitlines()) == 1


def test_pop_onto_a_newer_base(box: Box) -> None:
    m = Path(box.merged)
    (m / "etc" / "motd").write_text("stashed\n")
    box.cli("stash", "push", "c1")
    (m / "usr" / "bin" / "tool").write_bytes(b"new tool")
    box.cli("commit", "-q", "c1")  # the base moves, elsewhere
    box.cli("stash", "pop", "c1")
    assert box.cli("status", "c1").stdout == "C /etc/motd\n"
    assert (m / "etc" / "motd").read_text() == "stashed\n"


def test_pop_refuses_when_the_base_changed_the_path(box: Box) -> None:
    m = Path(box.merged)
    (m / "etc" / "motd").write_text("stashed\n")
    box.cli("stash", "push", "c1")
    (m / "etc" / "motd").write_text("committed\n")
    box.cli("commit", "-q", "c1")
    r = box.cli("stash", "pop", "c1", check=False)
    assert r.returncode != 0 and "/etc/motd" in r.stderr
    assert (m / "etc" / "motd").read_text() == "committed\n"


def test_nothing_to_stash(box: Box) -> None:
    r = box.cli("stash", "push", "c1", check=False)
    assert r.returncode != 0 and "no pending changes" in r.stderr


@pytest.mark.parametrize("point", ["undo.snapshot-recorded", "stash.before-clear"])
def test_kill_during_push_loses_nothing(box: Box, point: str) -> None:
    box.edit()
    before = box.state()
    r = box.cli("stash", "push", "c1", check=False, env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED
    fscks(box)
    box.assert_state(before)  # not cleared: the kill came first
    assert len(box.cli("stash", "list", "c1").stdout.splitlines()) == 1  # and saved


@pytest.mark.parametrize("point", ["stash.before-apply", "undo.apply-entry#2",
                                   "stash.before-drop"])
def test_kill_during_pop_then_undo(box: Box, point: str) -> None:
    box.edit()
    before = box.state()
    box.cli("stash", "push", "c1")
    cleared = box.state()
    r = box.cli("stash", "pop", "c1", check=False, env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED
    fscks(box)
    box.cli("undo")  # back to before the pop: cleared, the entry still there
    box.assert_state(cleared)
    box.cli("stash", "pop", "c1")
    box.assert_state(before)
