"""A big layer dir is not flushed before its rename: it is marked with the boot that
wrote it (layerdirs.UNSYNCED), and a dir an earlier boot left marked is built again,
since a crash may have lost what the kernel had not written back."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from layerctl import containers as api
from layerctl.containers import layerbuild, layerdirs, layerstack
from layerctl.images import resolve
from layerctl.store import debris
from tests.layerhelpers import import_dir, release_containers, same_as_image

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root"),
              pytest.mark.timeout(600)]

FILES = layerbuild.FSYNC_EACH + 40  # more entries than are flushed one by one


@pytest.fixture
def big(store, tmp_path):
    src = tmp_path / "src"
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(FILES // 4):
            (src / f"d{d}" / f"f{i}").write_bytes(b"%d %d\n" % (d, i) * (i + 1))
    import_dir(store, src, "big:1")
    lid = resolve(store, "big:1")
    yield lid
    release_containers(store)


def _mark(store, lid: str) -> Path:
    return Path(layerdirs.layer_path(store, lid)) / layerdirs.UNSYNCED


def test_a_big_layer_dir_carries_this_boots_mark_and_a_small_one_none(store, big, tmp_path):
    layerstack.ensure(store, big)
    assert _mark(store, big).read_text().strip() == debris.boot_id()
    # a commit's few changes are flushed entry by entry: no mark
    api.create(store, "big:1", name="w")
    merged = Path(api.mount(store, "w"))
    (merged / "d0" / "f1").write_bytes(b"changed\n")
    top = api.commit(store, "w", tag="big:2").layer_id
    layerstack.ensure(store, top)
    assert not _mark(store, top).exists()


def test_a_dir_an_earlier_boot_left_marked_is_built_again(store, big, tmp_path):
    layerstack.ensure(store, big)
    diff = Path(layerdirs.diff_path(store, big))
    # what a crash can leave: a file whose data never reached the disk, one missing
    os.truncate(diff / "d1" / "f7", 0)
    (diff / "d2" / "f3").unlink()
    _mark(store, big).write_text("another-boot\n")
    api.create(store, "big:1", name="c")
    same_as_image(store, "big:1", Path(api.mount(store, "c")), tmp_path)
    assert _mark(store, big).read_text().strip() == debris.boot_id()
    assert not [p for p in Path(layerdirs.root(store)).iterdir()
                if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\n"])
def test_an_empty_or_garbled_mark_is_not_trusted(store, big, content):
    layerstack.ensure(store, big)
    _mark(store, big).write_bytes(content)
    assert not layerdirs.trusted(store, big)
    before = os.stat(Path(layerdirs.diff_path(store, big)) / "d0" / "f0").st_ino
    layerstack.ensure(store, big)
    assert os.stat(Path(layerdirs.diff_path(store, big)) / "d0" / "f0").st_ino != before


def test_a_fresh_mark_of_this_boot_is_trusted_and_an_old_one_dropped(store, big):
    layerstack.ensure(store, big)
    file = Path(layerdirs.diff_path(store, big)) / "d3" / "f9"
    inode = os.stat(file).st_ino
    layerstack.ensure(store, big)
    assert _mark(store, big).exists() and os.stat(file).st_ino == inode  # not rebuilt
    old = time.time() - layerdirs.SETTLE - 5
    os.utime(_mark(store, big), (old, old))
    layerstack.ensure(store, big)
    assert not _mark(store, big).exists()  # flushed by now: one syncfs, the mark goes
    assert os.stat(file).st_ino == inode
    assert layerdirs.trusted(store, big)
