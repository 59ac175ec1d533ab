"""A base layer's dir written while its tar is applied (layerctl/containers/mirror.py):
the dir equals the one built from the stored changeset entry by entry; a tar that
replaces or hides an entry falls back to that build; a refused tar, a killed load or
a failing child leave nothing used behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from layerctl import containers as api
from layerctl.containers import layerdirs, layerstack, mirror
from layerctl.errors import BadInput
from layerctl.images import resolve
from layerctl.oci.archive.load import load
from layerctl.store.repo import Store
from tests.layerhelpers import same_as_image
from tests.treecompare import compare, snapshot

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root"),
              pytest.mark.timeout(300)]

MTIME = 1_700_000_000


def _member(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE,
            data: bytes = b"", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = kw.pop("mtime", MTIME)  # type: ignore[assignment]
    info.mode = kw.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)  # type: ignore[assignment]
    for key, value in kw.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _layer(build) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def _archive(tmp: Path, layer: bytes | list[bytes], tag: str, diff_id: str = "") -> Path:
    """A docker-archive of one layer (its config naming `diff_id`, by default the right
    one) or of several."""
    layers = layer if isinstance(layer, list) else [layer]
    diff_ids = [diff_id or "sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    names = [f"{i}/layer.tar" for i in range(len(layers))]
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag],
                            "Layers": names}]).encode()
    path = tmp / f"{tag.replace(':', '-')}.tar"
    with tarfile.open(path, "w") as out:
        for name, data in (*zip(names, layers, strict=True), ("config.json", config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return path


def _everything(tar: tarfile.TarFile) -> None:
    """Every kind of entry a base layer has, with metadata that is easy to get wrong."""
    _member(tar, "./", tarfile.DIRTYPE, mode=0o755, mtime=MTIME + 1)
    _member(tar, "etc", tarfile.DIRTYPE, mode=0o711, uid=3, gid=4, mtime=MTIME + 2)
    _member(tar, "etc/passwd", data=b"root:x:0:0\n", mode=0o600, uid=5, gid=6)
    _member(tar, "etc/setuid", data=b"#!/bin/sh\n", mode=0o4755)
    _member(tar, "etc/empty")
    _member(tar, "etc/attr", data=b"x\n", pax_headers={"SCHILY.xattr.user.k": "v"})
    _member(tar, "deep/er/than/listed", data=b"implicit parents\n")  # no dir entries
    _member(tar, "etc/link", tarfile.SYMTYPE, linkname="passwd", mode=0o777)
    _member(tar, "etc/hard", tarfile.LNKTYPE, linkname="etc/passwd")
    _member(tar, "dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
    _member(tar, "run/fifo", tarfile.FIFOTYPE, mode=0o600)
    _member(tar, "big", data=os.urandom(300_000), mode=0o640)
    _member(tar, "opt", tarfile.DIRTYPE, mode=0o700, mtime=MTIME + 3)  # empty, listed


class Outcomes(list):
    """What each mirror of the load did: "dir" (it wrote the layer dir), "none" (its
    child failed) or "stopped"; `pids`: its children."""

    pids: list[int]


@pytest.fixture
def outcomes(monkeypatch) -> Outcomes:
    seen = Outcomes()
    seen.pids = []
    init, result, stop = mirror.Mirror.__init__, mirror.Mirror.result, mirror.Mirror.stop

    def init_seen(self: mirror.Mirror, *args, **kw) -> None:
        init(self, *args, **kw)
        seen.pids.append(self.pid)

    def result_seen(self: mirror.Mirror):
        pending = result(self)
        seen.append("dir" if pending is not None else "none")
        return pending

    def stop_seen(self: mirror.Mirror) -> None:
        if self.live:
            seen.append("stopped")
        stop(self)

    monkeypatch.setattr(mirror.Mirror, "__init__", init_seen)
    monkeypatch.setattr(mirror.Mirror, "result", result_seen)
    monkeypatch.setattr(mirror.Mirror, "stop", stop_seen)
    return seen


def _as_built_from_changeset(store: Store, image: str, tmp: Path) -> None:
    """The layer dir the load left equals the one built from the stored changeset."""
    (lid,) = layerdirs.chain_ids(store, resolve(store, image))
    at_load = snapshot(layerdirs.diff_path(store, lid))
    shutil.rmtree(layerdirs.layer_path(store, lid))
    layerstack.ensure(store, lid)
    assert compare(at_load, snapshot(layerdirs.diff_path(store, lid))) == []
    api.create(store, image, name="c")
    same_as_image(store, image, Path(api.mount(store, "c")), tmp)
    api.umount(store, "c")


def _leftovers(store: Store) -> list[str]:
    top = Path(layerdirs.root(store))
    return sorted(p.name for p in top.iterdir()) if top.exists() else []


def test_a_base_layer_dir_is_written_while_its_tar_is_applied(store, tmp_path, outcomes):
    load(store, str(_archive(tmp_path, _layer(_everything), "all:1")))
    assert outcomes == ["dir"]
    _as_built_from_changeset(store, "all:1", tmp_path)


def test_a_big_file_goes_to_the_mirror_in_chunks(store, tmp_path, outcomes, monkeypatch):
    from layerctl.changeset import applier

    monkeypatch.setattr(applier, "BIG_FILE", 1000)  # "big" (300 kB) is spooled
    monkeypatch.setattr(applier, "_SPOOL_CHUNK", 4096)
    load(store, str(_archive(tmp_path, _layer(_everything), "all:1")))
    assert outcomes == ["dir"]
    _as_built_from_changeset(store, "all:1", tmp_path)


@pytest.mark.parametrize("case", ["file twice", "file then dir", "dir then file",
                                  "whiteout", "opaque"])
def test_a_tar_that_replaces_or_hides_an_entry_is_built_from_its_changeset(
        store, tmp_path, outcomes, case):
    def build(tar: tarfile.TarFile) -> None:
        _everything(tar)
        if case == "file twice":
            _member(tar, "etc/passwd", data=b"the later one wins\n")
        elif case == "file then dir":
            _member(tar, "etc/empty", tarfile.DIRTYPE)
            _member(tar, "etc/empty/inside", data=b"x\n")
        elif case == "dir then file":
            _member(tar, "deep/er", data=b"a file now\n")
        elif case == "whiteout":
            _member(tar, "etc/.wh.setuid")
        else:
            _member(tar, "etc/.wh..wh..opq")

    load(store, str(_archive(tmp_path, _layer(build), "odd:1")))
    assert outcomes == ["stopped"]
    _as_built_from_changeset(store, "odd:1", tmp_path)
    assert [p for p in _leftovers(store) if p.startswith(".tmp-")] == []


def test_a_refused_tar_leaves_no_dir_and_writes_nothing_outside(store, tmp_path, outcomes):
    outside = tmp_path / "outside"
    outside.mkdir()

    def build(tar: tarfile.TarFile) -> None:
        _everything(tar)
        _member(tar, "escape", tarfile.SYMTYPE, linkname=str(outside))
        for i in range(mirror._BATCH_OPS):  # the child has made the symlink
            _member(tar, f"filler/{i}", data=b"x")
        _member(tar, "escape/owned", data=b"through a symlink\n")

    with pytest.raises(BadInput, match="'escape/owned': parent 'escape' is a symlink"):
        load(store, str(_archive(tmp_path, _layer(build), "bad:1")))
    assert outcomes == ["stopped"]
    assert list(outside.iterdir()) == []
    assert [p for p in _leftovers(store) if p.startswith(".tmp-")] == []
    _reaped(outcomes)


def _reaped(outcomes: Outcomes) -> None:
    assert outcomes.pids
    for pid in outcomes.pids:
        with pytest.raises(ChildProcessError):  # waited for already: no zombie
            os.waitpid(pid, os.WNOHANG)


def test_a_layer_whose_digest_is_wrong_leaves_no_dir(store, tmp_path, outcomes):
    layer = _layer(_everything)
    archive = _archive(tmp_path, layer + b"\0" * 1024, "wrong:1",  # more zero blocks
                       diff_id="sha256:" + hashlib.sha256(layer).hexdigest())
    with pytest.raises(BadInput, match="DiffID mismatch"):
        load(store, str(archive))
    assert outcomes == ["stopped"]  # the whole tar was mirrored, then thrown away
    assert _leftovers(store) == []
    _reaped(outcomes)


def test_a_child_that_fails_leaves_the_dir_to_the_first_container(store, tmp_path, cli):
    archive = _archive(tmp_path, _layer(_everything), "all:1")
    cli("load", "-q", "-i", archive,
        env={"LAYERCTL_CRASH_AT": "layerdir.mirror-write#3"})
    assert layerdirs.entries(store) == []  # nothing half written under a layer's name
    assert _leftovers(store) == []
    api.create(store, "all:1", name="c")  # builds the dir now
    same_as_image(store, "all:1", Path(api.mount(store, "c")), tmp_path)
    api.umount(store, "c")


def test_a_killed_load_takes_its_child_along(store, tmp_path, cli):
    archive = _archive(tmp_path, _layer(_everything), "all:1")
    r = cli("load", "-q", "-i", archive, check=False,
            env={"LAYERCTL_CRASH_AT": "pack.write-object#2"})
    assert r.returncode == -9, r.stderr
    left = [p for p in _leftovers(store) if p.startswith(".tmp-")]
    assert left  # the dir being written, debris now
    _wait_until_no_process_in(Path(layerdirs.root(store)) / left[0])
    cli("fsck")
    assert _leftovers(store) == []
    cli("load", "-q", "-i", archive)
    _as_built_from_changeset(store, "all:1", tmp_path)


def _wait_until_no_process_in(root: Path, timeout: float = 10) -> None:
    """The child dies with its parent (PR_SET_PDEATHSIG); the kernel delivers that
    signal as the parent exits, so at most a moment passes before it is gone."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        inside = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if os.readlink(proc / "root") == str(root):
                        inside.append(proc.name)
                except OSError:
                    continue
        if not inside:
            return
        assert time.monotonic() < deadline, f"processes {inside} outlived the load"
        time.sleep(0.05)


def test_overlay_xattrs_in_a_tar_never_reach_a_layer_dir(store, tmp_path, cli):
    """A layer that marks a dir opaque (or redirects one) by xattr, not by whiteout, would
    hide the base's files from every container if the kernel saw the xattr."""
    base = _layer(_everything)

    def upper(tar: tarfile.TarFile) -> None:
        _member(tar, "etc", tarfile.DIRTYPE, mode=0o711, uid=3, gid=4, mtime=MTIME + 2,
                pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"})
        _member(tar, "etc/new", data=b"added\n")
        _member(tar, "deep", tarfile.DIRTYPE,
                pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                             "SCHILY.xattr.user.kept": "1"})

    layers = [base, _layer(upper)]
    load(store, str(_archive(tmp_path, layers, "ovl:1")))
    for lid in layerdirs.chain_ids(store, resolve(store, "ovl:1")):
        for entry in snapshot(layerdirs.diff_path(store, lid)).values():
            assert not [n for n, _v in entry.xattrs if n.startswith("trusted.overlay.")], entry
    api.create(store, "ovl:1", name="c")
    merged = Path(api.mount(store, "c"))
    assert (merged / "etc" / "passwd").read_bytes() == b"root:x:0:0\n"  # not hidden
    assert os.getxattr(merged / "deep", "user.kept") == b"1"
    same_as_image(store, "ovl:1", merged, tmp_path)
    api.umount(store, "c")
    out = tmp_path / "saved.tar"
    cli("save", "-o", out, "ovl:1")
    with tarfile.open(out) as saved:
        (manifest,) = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
        got = [hashlib.sha256(saved.extractfile(n).read()).hexdigest()  # type: ignore[union-attr]
               for n in manifest["Layers"]]
    assert got == [hashlib.sha256(b).hexdigest() for b in layers]  # the tars as they came
