"""`save` reads regular files from the layers' overlay dirs (issue 16).

A layer dir holds the layer's files as plain files, as podman's storage does; save
takes a file's content from there instead of inflating its pack object, but only if
the file's git blob id is the stored one. A layer dir is on the host's disk and
anything root did to it (other bytes, a truncation, a symlink to a secret, a fifo, a
directory swapped for a symlink) must not reach a saved image: the archive must be the
one the store alone gives, byte for byte, in every format.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from layerctl import faults
from layerctl.containers import layerdirs, layerstack
from layerctl.oci.archive.blobs import Blobs
from layerctl.oci.archive.save import save
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.unit.test_changeset_write import every_kind

pytestmark = pytest.mark.usefixtures("needs_root")

SECRET = Path("/etc/shadow")
FORMATS = ["docker-archive", "oci"]


@pytest.fixture
def chain(store, tmp_path: Path) -> list[str]:  # noqa: ANN001 - the conftest Store
    """kinds:2 over kinds:1, every kind of entry, both layers' dirs on disk: [base, top]."""
    src = tmp_path / "src"
    every_kind(src)
    # a file as long as the secret, so only the checks stop a symlink to it
    (src / "shadow-sized").write_bytes(b"s" * SECRET.stat().st_size)
    base = import_dir(store, src, "kinds:1")

    def edit(editor, writer) -> None:  # noqa: ANN001
        put_file(editor, writer, b"etc/passwd", b"root:x:0:0:changed\n")
        put_file(editor, writer, b"top-new", b"added by the top layer " * 5000)  # > 64 KiB
        editor.delete(b"etc/empty")  # a whiteout

    top = commit_edit(store, "kinds:1", edit, name="kinds:2")
    for layer in (base, top):
        layerstack.ensure(store, layer)
    return [base, top]


def saved(store, tmp_path: Path, fmt: str, name: str) -> tuple[bytes, Blobs]:  # noqa: ANN001
    """The archive of kinds:2, and what save says of it (Blobs: `altered`, and its
    reader's `from_files` and `mismatched`)."""
    out = tmp_path / name
    _images, blobs = save(store, ["kinds:2"], str(out), fmt)
    return out.read_bytes(), blobs


def from_store(store, tmp_path: Path, fmt: str) -> bytes:  # noqa: ANN001
    """The archive with no layer dir on disk: every content inflated from the packs."""
    top = Path(layerdirs.root(store))
    aside = tmp_path / "overlay-aside"
    top.rename(aside)
    try:
        data, blobs = saved(store, tmp_path, fmt, f"ref-{fmt}.tar")
    finally:
        aside.rename(top)
    assert blobs.reader.from_files == 0
    return data


def layer_file(store, layer: str, path: str) -> Path:  # noqa: ANN001
    return Path(layerdirs.diff_path(store, layer)) / path


def contents_in(store, layer: str) -> int:  # noqa: ANN001
    """How many contents `layer`'s dir holds: its regular files, a hardlink group once."""
    return contents_in_dir(Path(layerdirs.diff_path(store, layer)))


def contents_in_dir(top: Path) -> int:
    return len({p.stat().st_ino for p in top.rglob("*") if p.is_file() and not p.is_symlink()})


@pytest.mark.parametrize("fmt", FORMATS)
def test_save_from_layer_dirs_gives_the_bytes_of_the_store(store, chain, tmp_path, fmt):  # noqa: ANN001
    want = from_store(store, tmp_path, fmt)
    got, blobs = saved(store, tmp_path, fmt, "a.tar")
    again, _ = saved(store, tmp_path, fmt, "b.tar")
    assert got == want and again == want
    assert blobs.reader.mismatched == 0 and blobs.altered == {}
    # every content of both changesets came from a layer dir
    assert blobs.reader.from_files == sum(contents_in(store, layer) for layer in chain) > 80


def _other_bytes(p: Path, tmp: Path) -> None:
    p.write_bytes(bytes(b ^ 0xFF for b in p.read_bytes()))  # same size


def _truncated(p: Path, tmp: Path) -> None:
    os.truncate(p, p.stat().st_size // 2)


def _grown(p: Path, tmp: Path) -> None:
    with open(p, "ab") as f:
        f.write(b"more")


def _to_secret(p: Path, tmp: Path) -> None:
    p.unlink()
    p.symlink_to(SECRET)


def _hardlink_to_secret(p: Path, tmp: Path) -> None:
    p.unlink()
    os.link(SECRET, p)


def _removed(p: Path, tmp: Path) -> None:
    p.unlink()


def _a_directory(p: Path, tmp: Path) -> None:
    p.unlink()
    p.mkdir()


def _a_fifo(p: Path, tmp: Path) -> None:
    p.unlink()
    os.mkfifo(p)


def _a_device(p: Path, tmp: Path) -> None:  # /dev/zero: reads forever
    p.unlink()
    os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 5))


def _parent_swapped(p: Path, tmp: Path) -> None:
    """The file's directory replaced by a symlink to a host dir holding a file of the
    same name and size (O_NOFOLLOW guards only the last component)."""
    if p.parent.name == "diff":  # a file at the top of the layer: its dir is the layer's
        _other_bytes(p, tmp)
        return
    tmp.mkdir()
    (tmp / p.name).write_bytes(bytes(b ^ 0xFF for b in p.read_bytes()))
    shutil.rmtree(p.parent)
    p.parent.symlink_to(tmp)


def _same_stat(p: Path, tmp: Path) -> None:
    """Other bytes, same size, mtime put back: nothing a stat-based cache would see."""
    st = p.stat()
    _other_bytes(p, tmp)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _unreadable(p: Path, tmp: Path) -> None:
    os.chmod(p, 0)  # root reads it anyway: the content check still passes
    _other_bytes(p, tmp)


TAMPERS: dict[str, Callable[[Path, Path], None]] = {
    f.__name__.strip("_"): f for f in (
        _other_bytes, _same_stat, _truncated, _grown, _to_secret, _hardlink_to_secret,
        _removed, _a_directory, _a_device, _parent_swapped, _unreadable)
}
# (layer index, path): small files (read in batches), a file over 64 KiB (read by a
# task of its own), the top layer's changed and new files, the secret-sized one
TARGETS = [(0, "many/f05"), (0, "bin/sh"), (1, "etc/passwd"), (1, "top-new"),
           (0, "shadow-sized")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_tampered_layer_dir_never_reaches_the_archive(store, chain, tmp_path, fmt,  # noqa: ANN001
                                                        tamper):
    want = from_store(store, tmp_path, fmt)
    assert saved(store, tmp_path, fmt, "before.tar")[0] == want  # read once untouched
    for i, (layer, path) in enumerate(TARGETS):
        target = layer_file(store, chain[layer], path)
        TAMPERS[tamper](target, tmp_path / f"t{i}")
    got, blobs = saved(store, tmp_path, fmt, "tampered.tar")
    assert got == want
    assert blobs.reader.mismatched >= len(TARGETS)  # each one was read, and refused
    assert set(blobs.altered) == set(chain)  # said, per layer
    assert blobs.reader.from_files > 0  # the untouched files still came from the dirs


def test_a_fifo_in_a_layer_dir_does_not_block_save(store, chain, tmp_path, cli):  # noqa: ANN001
    want = from_store(store, tmp_path, "docker-archive")
    for i, (layer, path) in enumerate(TARGETS):
        _a_fifo(layer_file(store, chain[layer], path), tmp_path / f"t{i}")
    out = tmp_path / "fifo.tar"
    # not an open() waiting for a writer
    proc = cli("save", "-q", "-o", out, "kinds:2", timeout=60)
    assert out.read_bytes() == want
    for layer in chain:
        assert f"layer {layer[:12]}: " in proc.stderr and "differ from the store" in proc.stderr


def test_a_layer_dir_not_landed_is_not_read(store, chain, tmp_path):  # noqa: ANN001
    """Only a dir under its layer's name is complete (renamed whole); one still under
    a temporary name (being built, or left by a kill) is never read."""
    want = from_store(store, tmp_path, "docker-archive")
    top = Path(layerdirs.layer_path(store, chain[1]))
    top.rename(top.with_name(f".tmp-{os.getpid()}-building"))
    for p in top.with_name(f".tmp-{os.getpid()}-building").rglob("*"):
        if p.is_file() and not p.is_symlink():
            _other_bytes(p, tmp_path)
    got, blobs = saved(store, tmp_path, "docker-archive", "a.tar")
    assert got == want and blobs.reader.mismatched == 0
    assert blobs.reader.from_files == contents_in(store, chain[0])  # the base's dir alone


def test_a_file_changed_after_its_look_before_its_read_is_not_taken(store, chain,  # noqa: ANN001
                                                                    tmp_path):
    """Opened and stat()ed as the right regular file of the right size, then rewritten
    in place before the read: the bytes read are the bytes checked."""
    want = from_store(store, tmp_path, "oci")
    lock = threading.Lock()
    done: list[bool] = []

    def rewrite() -> None:  # on a reader thread, before any file is read
        with lock:
            if not done:
                for layer, path in TARGETS:
                    _same_stat(layer_file(store, chain[layer], path), tmp_path)
                done.append(True)

    with faults.armed("blobread.file-read", rewrite):
        got, blobs = saved(store, tmp_path, "oci", "raced.tar")
    assert done and got == want
    assert blobs.reader.mismatched == len(TARGETS) and set(blobs.altered) == set(chain)


def test_a_layer_dir_pruned_during_save(store, chain, tmp_path):  # noqa: ANN001
    """Found, then taken away (prune renames it aside, then deletes it) before its
    files are read: every file comes from the packs, the archive is the same."""
    want = from_store(store, tmp_path, "docker-archive")
    aside = tmp_path / "pruned"

    def prune() -> None:  # reached first for the base, the first layer written
        base = Path(layerdirs.layer_path(store, chain[0]))
        if base.exists():
            base.rename(aside)

    with faults.armed("save.layer-dir", prune):
        got, blobs = saved(store, tmp_path, "docker-archive", "pruned.tar")
    assert aside.exists() and got == want
    assert blobs.altered == {chain[0]: contents_in_dir(aside / "diff")}
    assert blobs.reader.from_files == contents_in(store, chain[1])  # the top's dir read


def test_a_loaded_image_is_saved_from_its_layer_dirs(store, chain, tmp_path, cli):  # noqa: ANN001
    """`load` writes the layer dirs (root, overlay): the next `save` reads them and
    gives the archive loaded, byte for byte."""
    from layerctl.containers.overlayfs import probe
    from layerctl.images import resolve
    from layerctl.store.repo import Store

    if probe() is not None:
        pytest.skip(f"no layer dirs at load here: {probe()}")
    archive = tmp_path / "kinds.tar"
    cli("save", "-q", "-o", archive, "kinds:2")
    other = tmp_path / "other-store"
    other.mkdir()
    cli("load", "-q", "-i", archive, env={"LAYERCTL_ROOT": str(other)})
    loaded = Store(str(other))
    ids = layerdirs.chain_ids(loaded, resolve(loaded, "kinds:2"))
    assert len(ids) == 2 and set(layerdirs.entries(loaded)) == set(ids)
    got, blobs = saved(loaded, tmp_path, "docker-archive", "again.tar")
    assert got == archive.read_bytes()
    assert blobs.reader.from_files == sum(contents_in(loaded, layer) for layer in ids) > 80
