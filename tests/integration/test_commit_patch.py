"""Hunk staging: `commit --patch` asks per hunk (git add -p's y/n/q/a/d/s) and commits
only the chosen ones; the container keeps the whole file, the rest stays pending."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.undohelpers import Box, make_box

pytestmark = pytest.mark.needs_root

BASHRC = "etc/bash.bashrc"


def _three_changes(text: str) -> tuple[str, list[str]]:
    """`text` with a line added at the top, one replaced in the middle and one added
    at the end (three hunks far apart); also each change alone applied."""
    lines = text.splitlines(keepends=True)
    mid = len(lines) // 2
    first = ["# first change\n", *lines]
    middle = [*lines[:mid], "# middle change\n", *lines[mid + 1:]]
    last = [*lines, "# last change\n"]
    both = ["# first change\n", *lines[:mid], "# middle change\n", *lines[mid + 1:],
            "# last change\n"]
    return "".join(both), ["".join(first), "".join(middle), "".join(last)]


def _hunks(patch: str) -> list[str]:
    return [line for line in patch.splitlines() if line.startswith("@@")]


def test_one_of_three_hunks_of_bash_bashrc(cli, debian_rootfs: Path, store_root: Path) -> None:
    from layerctl.store.repo import Store
    from tests.layerhelpers import release_containers

    cli("import", debian_rootfs, "deb")
    cli("create", "--name", "d1", "deb")
    merged = Path(cli("mount", "d1").stdout.strip())
    try:
        original = (debian_rootfs / BASHRC).read_text()
        edited, alone = _three_changes(original)
        (merged / BASHRC).write_text(edited)
        assert len(_hunks(cli("diff", "-p", "d1").stdout)) == 3
        r = cli("commit", "--patch", "-m", "middle only", "d1", input="n\ny\nn\n")
        assert r.stdout.count("Stage this hunk") == 3
        layer = r.stdout.strip().splitlines()[-1]
        assert "1 still pending" in r.stderr
        # the layer has that hunk, and only it
        assert cli("show", f"{layer}:/{BASHRC}").stdout == alone[1]
        # the container still shows the other two, against the new base
        assert cli("status", "d1").stdout == f"C /{BASHRC}\n"
        rest = cli("diff", "-p", "d1").stdout
        assert len(_hunks(rest)) == 2
        assert "+# first change" in rest and "+# last change" in rest
        assert "middle change" not in rest
        assert (merged / BASHRC).read_text() == edited  # the full file stays
        assert cli("fsck").returncode == 0
    finally:
        release_containers(Store(str(store_root)))


@pytest.fixture
def box(cli, store_root: Path, tmp_path: Path) -> Iterator[Box]:  # noqa: ANN001
    with make_box(cli, store_root, tmp_path) as b:
        text = "".join(f"line {i}\n" for i in range(1, 41))
        (Path(b.merged) / "etc" / "long.txt").write_text(text)
        b.cli("commit", "-q", "c1")
        yield b


def _edit_long(box: Box, changes: dict[int, str]) -> str:
    path = Path(box.merged) / "etc" / "long.txt"
    lines = path.read_text().splitlines(keepends=True)
    for n, text in changes.items():
        lines[n - 1] = text + "\n"
    path.write_text("".join(lines))
    return "".join(lines)


def test_split_a_hunk_and_take_part(box: Box) -> None:
    _edit_long(box, {10: "TEN", 14: "FOURTEEN"})  # 3 lines apart: one hunk
    assert len(_hunks(box.cli("diff", "-p", "c1").stdout)) == 1
    r = box.cli("commit", "--patch", "c1", input="s\ny\nn\n")
    assert "Split into 2 hunks." in r.stdout
    layer = r.stdout.strip().splitlines()[-1]
    got = box.cli("show", f"{layer}:/etc/long.txt").stdout.splitlines()
    assert got[9] == "TEN" and got[13] == "line 14"
    rest = box.cli("diff", "-p", "c1").stdout
    assert "+FOURTEEN" in rest and "TEN\n" not in rest.replace("FOURTEEN", "")


def test_a_d_q_and_whole_changes(box: Box) -> None:
    m = Path(box.merged)
    _edit_long(box, {2: "TWO", 20: "TWENTY", 38: "THIRTY-EIGHT"})
    (m / "etc" / "motd").write_text("one\nTWO\nthree\n")
    (m / "etc" / "added.conf").write_text("added\n")
    (m / "etc" / "hostname").unlink()
    # walk order: added.conf, hostname, long.txt (3 hunks), motd
    r = box.cli("commit", "--patch", "c1", input="y\nn\nn\na\nq\n")
    layer = r.stdout.strip().splitlines()[-1]
    status = box.cli("status", "c1").stdout
    assert "A /etc/added.conf" not in status  # y: taken whole
    assert "D /etc/hostname" in status  # n: still pending
    got = box.cli("show", f"{layer}:/etc/long.txt").stdout.splitlines()
    assert got[1] == "line 2" and got[19] == "TWENTY" and got[37] == "THIRTY-EIGHT"  # n, a
    assert "C /etc/motd" in status  # q: this and the rest stay pending
    # d: none of the file's (remaining) hunks; the end of input reads as q
    r = box.cli("commit", "--patch", "c1", input="d\nd\n", check=False)
    assert r.returncode != 0 and "nothing chosen" in r.stderr


def test_nothing_chosen_commits_nothing(box: Box) -> None:
    _edit_long(box, {5: "FIVE"})
    before = box.state()
    r = box.cli("commit", "--patch", "c1", input="n\n", check=False)
    assert r.returncode != 0 and "nothing chosen" in r.stderr
    box.assert_state(before)


def test_undo_a_patch_commit(box: Box) -> None:
    _edit_long(box, {5: "FIVE", 30: "THIRTY"})
    before = box.state()
    box.cli("commit", "--patch", "c1", input="y\nn\n")
    assert box.state() != before
    box.cli("undo")
    box.assert_state(before)


def test_patch_output_unchanged_for_diff(box: Box) -> None:
    """The one renderer: what `diff -p` prints is git's unified diff of the file."""
    import difflib

    old = (Path(box.merged) / "etc" / "long.txt").read_text()
    new = _edit_long(box, {1: "ONE", 40: "FORTY"})
    expected = [line.rstrip("\n") for line in difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        "a/etc/long.txt", "b/etc/long.txt")]
    out = box.cli("diff", "-p", "c1").stdout.splitlines()
    assert out[out.index("--- a/etc/long.txt"):] == expected
