"""The cross-tool matrix: one 4-layer image holding every layer scenario, made in layerctl
containers (overlay), read by podman, umoci and skopeo, and the reverse direction.

Scenarios, by layer:
  1 (import)  the base tree: files, directories, a symlink, a file later hardlinked,
              devices and a fifo appear later; root-owned, fixed mtimes
  2 (commit)  file added / modified / deleted; directory deleted; directory replaced by
              a file and a file by a directory; directory removed and recreated with
              some of the same names (explicit whiteouts for the names gone: the tree
              diff sees the kept names as modified) and one recreated with new names
              only (an opaque marker, alone); symlink -> directory and directory ->
              symlink; hardlinks inside the layer and to a file of the layer below;
              security.capability and user xattrs; setuid and sticky bits; a fifo and
              a char device; metadata-only change of a directory
  3 (commit)  a second modification, a metadata-only change of the root's child dir
  4 (commit)  deletion of a file added two layers down (layer 2) and of one from layer 1

Each direction must give entry-for-entry the same tree as `layerctl checkout`
(tests/treecompare: type, mode, owner, mtime, size, content, target, rdev, xattrs,
hardlink groups), and no entry may list without being stat-able (the ghost entries
of explicit whiteouts beside an opaque marker).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerctl import containers
from layerctl.images import chain, parse_name, resolve
from layerctl.oci.archive.load import load
from layerctl.oci.archive.save import save
from layerctl.oci.registry.pull import pull
from layerctl.oci.registry.push import push
from layerctl.oci.registry.reference import parse_reference
from layerctl.store.checkout import checkout
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from tests.interchange_helpers import PODMAN_ROOT, Podman
from tests.layerhelpers import import_dir, release_containers
from tests.treecompare import compare, snapshot

pytestmark = pytest.mark.needs_root

MTIME = 1_650_000_000
CAP = b"\x01\x00\x00\x02\x00\x20\x00\x00" + b"\x00" * 12  # cap_net_bind_service, v2
NAME = "matrix/app:4"


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "store"))
    try:
        yield s
    finally:
        for c in containers.list_containers(s):
            containers.remove(s, c.name, force=True)
        release_containers(s)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def _base_tree(top: Path) -> Path:
    for d in ("keep", "mod", "del", "gone/sub", "d2f", "recreate", "d2s", "meta", "caps",
              "far"):
        (top / d).mkdir(parents=True, exist_ok=True)
    _write(top / "keep/file", "kept\n")
    _write(top / "mod/file", "v1\n")
    _write(top / "del/file", "deleted in layer 2\n")
    _write(top / "gone/sub/deep", "whole directory deleted\n")
    _write(top / "gone/file", "whole directory deleted\n")
    _write(top / "d2f/child", "directory becomes a file\n")
    _write(top / "f2d", "file becomes a directory\n")
    for name in ("a", "b", "c"):
        _write(top / "recreate" / name, f"old {name}\n")
    (top / "replaced").mkdir()
    for name in ("x", "y"):
        _write(top / "replaced" / name, f"old {name}\n")
    os.symlink("keep", top / "s2d")
    _write(top / "d2s/child", "directory becomes a symlink\n")
    _write(top / "lowerhard", "hardlinked from layer 2\n")
    _write(top / "meta/x", "in a directory whose metadata changes\n")
    _write(top / "caps/ping", "\x7fELF pretend\n", 0o755)
    _write(top / "far/victim", "deleted three layers up\n")
    for path in sorted(top.rglob("*"), reverse=True):
        os.utime(path, ns=(MTIME * 10**9, MTIME * 10**9), follow_symlinks=False)
    os.utime(top, ns=(MTIME * 10**9, MTIME * 10**9))
    return top


def _layer_two(root: Path) -> None:
    _write(root / "new", "added\n")
    _write(root / "mod/file", "v2, longer\n")
    os.unlink(root / "del/file")
    subprocess.run(["rm", "-rf", str(root / "gone")], check=True)
    subprocess.run(["rm", "-rf", str(root / "d2f")], check=True)
    _write(root / "d2f", "now a file\n")
    os.unlink(root / "f2d")
    (root / "f2d").mkdir()
    _write(root / "f2d/inside", "now a directory\n")
    subprocess.run(["rm", "-rf", str(root / "recreate")], check=True)
    (root / "recreate").mkdir()
    _write(root / "recreate/a", "new a\n")  # a name the old directory had
    _write(root / "recreate/d", "new d\n")
    subprocess.run(["rm", "-rf", str(root / "replaced")], check=True)
    (root / "replaced").mkdir()
    _write(root / "replaced/z", "only new names\n")
    os.unlink(root / "s2d")
    (root / "s2d").mkdir()
    _write(root / "s2d/file", "symlink became a directory\n")
    subprocess.run(["rm", "-rf", str(root / "d2s")], check=True)
    os.symlink("keep/file", root / "d2s")
    (root / "links").mkdir()
    _write(root / "links/one", "two names in one layer\n")
    os.link(root / "links/one", root / "links/two")
    os.link(root / "lowerhard", root / "links/lower")  # a file of the layer below
    os.setxattr(root / "caps/ping", "security.capability", CAP)
    os.setxattr(root / "caps/ping", "user.note", b"user xattr")
    _write(root / "suid", "setuid\n", 0o4755)
    os.chmod(root / "suid", 0o4755)  # after the write, which clears setuid
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o20666, os.makedev(1, 3))
    os.chmod(root / "null", 0o666)
    os.chmod(root / "meta", 0o700)  # metadata only
    _write(root / "twodown", "deleted in layer 4\n")


def _layer_three(root: Path) -> None:
    _write(root / "mod/file", "v3\n")
    os.chown(root / "keep", 1000, 1000)  # metadata only, on a directory
    _write(root / "third", "layer 3\n")


def _layer_four(root: Path) -> None:
    os.unlink(root / "twodown")  # added two layers down
    os.unlink(root / "far/victim")  # from the base, three layers down


def _build(store: Store, tmp_path: Path) -> str:
    import_dir(store, _base_tree(tmp_path / "base"), "matrix/app:1")
    c, _ = containers.create(store, "matrix/app:1", name="matrix", driver="overlay")
    root = Path(containers.mount(store, c.name))
    for n, edit in ((2, _layer_two), (3, _layer_three), (4, _layer_four)):
        edit(root)
        containers.commit(store, c.name, message=f"layer {n}", tag=f"matrix/app:{n}")
    containers.remove(store, c.name, force=True)
    return resolve(store, NAME)


def _scenarios_present(snap: dict) -> None:
    """The image holds what the scenarios made (so that equal trees mean something)."""
    assert dict(snap[b"caps/ping"].xattrs) == {"security.capability": CAP,
                                                "user.note": b"user xattr"}
    assert (snap[b"null"].type, snap[b"null"].rdev) == ("char", (1, 3))
    assert snap[b"fifo"].type == "fifo"
    assert (snap[b"suid"].mode, snap[b"tmp"].mode, snap[b"meta"].mode) == (
        0o4755, 0o1777, 0o700)
    assert snap[b"links/one"].hardlink == snap[b"links/two"].hardlink == b"links/one"
    assert snap[b"links/lower"].hardlink == snap[b"lowerhard"].hardlink == b"links/lower"
    assert (snap[b"d2f"].type, snap[b"f2d"].type, snap[b"s2d"].type, snap[b"d2s"].type) == (
        "file", "dir", "dir", "symlink")
    assert sorted(p for p in snap if p.startswith(b"recreate/")) == [b"recreate/a",
                                                                     b"recreate/d"]
    assert sorted(p for p in snap if p.startswith(b"replaced/")) == [b"replaced/z"]
    assert (snap[b"keep"].uid, snap[b"mod/file"].size) == (1000, 3)
    for gone in (b"gone", b"del/file", b"twodown", b"far/victim"):
        assert gone not in snap


def _layer_names(archive: Path, index: int) -> set[str]:
    """The member names of the docker-archive's layer `index` (0: base)."""
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        layer = outer.extractfile(manifest["Layers"][index])
        with tarfile.open(fileobj=layer) as inner:
            return {m.name.removeprefix("./").rstrip("/") for m in inner.getmembers()}


def _checkout(store: Store, ref: str, dest: Path) -> Path:
    checkout(store, read_layer(store, resolve(store, ref)).root, str(dest))
    return dest


def _unstatable(root: str | Path) -> list[str]:
    """Entries readdir lists but lstat cannot find (podman's `c?????????` ghosts)."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                os.lstat(os.path.join(dirpath, name))
            except OSError:
                bad.append(os.path.relpath(os.path.join(dirpath, name), root))
    return bad


class _Mounted:
    """`podman image mount` of an image, unmounted on exit."""

    def __init__(self, podman: Podman, ref: str) -> None:
        self.podman, self.ref = podman, ref

    def __enter__(self) -> str:
        self.path = self.podman("image", "mount", self.ref)
        return self.path

    def __exit__(self, *_: object) -> None:
        self.podman("image", "unmount", self.ref, check=False)


def _same_as_podman(podman: Podman, ref: str, tree: Path) -> None:
    with _Mounted(podman, ref) as mount:
        assert _unstatable(mount) == []
        assert compare(tree, mount, ignore=PODMAN_ROOT) == []


# umoci unpack: the rootfs directory is umoci's own (mode 0755 / mtime of the unpack),
# not the image's root (it applies the layers' `./` entries' metadata only to entries
# below it); everything else umoci reproduces, xattrs and devices included.
UMOCI_ROOT = {"mode:.", "mtime:.", "uid:.", "gid:."}


def test_layerctl_image_in_podman_umoci_and_a_registry(store, podman, registry, tmp_path,
                                                       needs_tool):
    needs_tool("umoci")
    needs_tool("skopeo")
    _build(store, tmp_path)
    layers = chain(store, resolve(store, NAME))
    assert len(layers) == 4
    ours = _checkout(store, NAME, tmp_path / "co")
    assert _unstatable(ours) == []
    _scenarios_present(snapshot(ours))

    # save -> podman load -> podman image mount
    archive = tmp_path / "matrix.tar"
    save(store, [NAME], str(archive))
    podman("load", "-i", archive)
    _same_as_podman(podman, f"localhost/{NAME}", ours)

    names = [_layer_names(archive, i) for i in range(4)]
    for layer in names:  # an opaque marker stands alone: no explicit whiteouts beside it
        for marker in (n for n in layer if n.endswith("/.wh..wh..opq")):
            folder = marker[: -len(".wh..wh..opq")]
            assert not {n for n in layer if n.startswith(folder + ".wh.") and n != marker}
    assert {"del/.wh.file", ".wh.gone", "d2f", "recreate/.wh.b", "replaced/.wh..wh..opq",
            "replaced/z"} <= names[1]
    assert {".wh.twodown", "far/.wh.victim"} <= names[3]

    # save --format oci-dir -> umoci unpack
    layout = tmp_path / "layout"
    save(store, [NAME], str(layout), fmt="oci-dir", compression="gzip")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{NAME}", str(bundle)],
                   check=True, capture_output=True)
    assert _unstatable(bundle / "rootfs") == []
    assert compare(ours, bundle / "rootfs", ignore=UMOCI_ROOT) == []

    # push -> podman pull (skopeo sees the DiffIDs layerctl recorded)
    remote = f"{registry.host}/matrix/app:4"
    push(store, parse_name(NAME), parse_reference(remote))
    config = json.loads(subprocess.run(
        ["skopeo", "inspect", "--config", "--tls-verify=false", f"docker://{remote}"],
        capture_output=True, check=True).stdout)
    assert config["rootfs"]["diff_ids"] == [x.diff_id for x in layers]
    podman("pull", "-q", "--tls-verify=false", remote)
    _same_as_podman(podman, remote, ours)


def test_podman_image_in_layerctl(store, podman, registry, tmp_path):
    """The reverse direction: what podman holds, saved or pushed by podman, is what
    layerctl checks out."""
    _build(store, tmp_path)
    archive = tmp_path / "matrix.tar"
    save(store, [NAME], str(archive))
    podman("load", "-i", archive)
    image = f"localhost/{NAME}"
    podman_ids = podman.inspect(image)["RootFS"]["Layers"]

    for fmt in ("docker-archive", "oci-archive"):
        out = tmp_path / f"podman-{fmt}.tar"
        podman("save", "--format", fmt, "-o", out, image)
        target = Store(str(tmp_path / f"from-{fmt}"))
        try:
            loaded = load(target, str(out))
            tree = _checkout(target, loaded[0].top, tmp_path / f"co-{fmt}")
            _same_as_podman(podman, image, tree)
            assert [x.source_diff_id or x.diff_id for x in chain(target, loaded[0].top)] == (
                podman_ids)
        finally:
            target.close()

    remote = f"{registry.host}/matrix/podman:4"
    podman("push", "-q", "--tls-verify=false", image, f"docker://{remote}")
    target = Store(str(tmp_path / "pulled"))
    try:
        result = pull(target, parse_reference(remote))
        tree = _checkout(target, result.layer_id, tmp_path / "co-pulled")
        _same_as_podman(podman, image, tree)
    finally:
        target.close()
