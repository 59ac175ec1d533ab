"""Interchange with the real tools: podman load/save/image mount, skopeo inspect, umoci
unpack, and `track` of a podman container. podman runs on a private storage under the
test's temporary directory (never the machine's), emptied and unmounted afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerctl import containers
from layerctl.images import chain, image_id, resolve
from layerctl.oci.archive.load import load
from layerctl.oci.archive.save import save
from layerctl.oci.engines import track
from layerctl.store.checkout import checkout
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from tests.interchange_helpers import (
    PODMAN_ROOT,
    Podman,
    make_tree,
    podman_two_layers,
)
from tests.layerhelpers import import_dir
from tests.treecompare import compare

pytestmark = pytest.mark.needs_root

def _checkout(store: Store, ref: str, dest: Path) -> Path:
    checkout(store, read_layer(store, resolve(store, ref)).root, str(dest))
    return dest


def _diff_ids(store: Store, ref: str) -> list[str]:
    return [layer.diff_id for layer in chain(store, resolve(store, ref))]


# -- layerctl save -> podman, skopeo, umoci ------------------------------------------------


@pytest.mark.parametrize("fmt,compress", [("docker-archive", "none"), ("docker-archive", "gzip"),
                                          ("oci", "gzip"), ("oci", "zstd")])
def test_podman_loads_what_layerctl_saves(store, image, podman, tmp_path, fmt, compress):
    out = tmp_path / "a.tar"
    save(store, ["test/app:1"], str(out), fmt, compress)
    loaded = podman("load", "-i", out)
    assert "test/app:1" in loaded
    info = podman.inspect("test/app:1")
    assert info["RootFS"]["Layers"] == _diff_ids(store, "test/app:1")
    if fmt == "docker-archive":  # podman keeps the config as it came: the same image ID
        assert "sha256:" + info["Id"] == image_id(chain(store, image[-1]))


def test_podman_loads_the_debian_image(debian_rootfs, store, podman, tmp_path):
    from tests.layerhelpers import commit_edit, import_dir

    base = import_dir(store, debian_rootfs, "debian:base")
    commit_edit(store, base, _debian_edit, name="debian:edited")
    out = tmp_path / "debian.tar"
    save(store, ["debian:edited"], str(out))
    podman("load", "-i", out)
    info = podman.inspect("debian:edited")
    assert info["RootFS"]["Layers"] == _diff_ids(store, "debian:edited")
    assert len(info["RootFS"]["Layers"]) == 2
    mount = podman("image", "mount", "debian:edited")
    try:
        got = compare(_checkout(store, "debian:edited", tmp_path / "co"), mount,
                      ignore=PODMAN_ROOT)
    finally:
        podman("image", "unmount", "debian:edited")
    assert got == []


def _debian_edit(editor, writer):
    from tests.layerhelpers import put_file

    put_file(editor, writer, b"etc/motd", b"changed\n")
    editor.delete(b"usr/share/doc")
    editor.clear_dir(b"var/log/apt")
    put_file(editor, writer, b"var/log/apt/new.log", b"log\n")


def test_skopeo_inspects_every_format(store, image, needs_tool, tmp_path):
    needs_tool("skopeo")
    archive, layout, oci_tar = tmp_path / "a.tar", tmp_path / "layout", tmp_path / "o.tar"
    save(store, ["test/app:1"], str(archive))
    save(store, ["test/app:1"], str(layout), "oci-dir", "gzip")
    save(store, ["test/app:1"], str(oci_tar), "oci", "zstd")
    for ref in (f"docker-archive:{archive}", f"oci:{layout}:test/app:1",
                f"oci-archive:{oci_tar}:test/app:1"):
        proc = subprocess.run(["skopeo", "inspect", ref], capture_output=True, text=True)
        assert proc.returncode == 0, f"skopeo inspect {ref}: {proc.stderr}"
        assert len(json.loads(proc.stdout)["Layers"]) == 2
    proc = subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{archive}"],
                          capture_output=True, text=True, check=True)
    config = json.loads(proc.stdout)
    assert config["rootfs"]["diff_ids"] == _diff_ids(store, "test/app:1")


@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_umoci_unpack_equals_checkout(store, image, needs_tool, tmp_path, compress):
    needs_tool("umoci")
    layout = tmp_path / "layout"
    save(store, ["test/app:1"], str(layout), "oci-dir", compress)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:test/app:1", str(bundle)],
                   check=True, capture_output=True)
    assert compare(bundle / "rootfs", _checkout(store, "test/app:1", tmp_path / "co")) == []


def test_umoci_unpack_of_the_debian_image(debian_rootfs, store, needs_tool, tmp_path):
    needs_tool("umoci")
    from tests.layerhelpers import commit_edit, import_dir

    base = import_dir(store, debian_rootfs, "debian:base")
    commit_edit(store, base, _debian_edit, name="debian:edited")
    layout = tmp_path / "layout"
    save(store, ["debian:edited"], str(layout), "oci-dir", "gzip")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:debian:edited", str(bundle)],
                   check=True, capture_output=True)
    got = compare(bundle / "rootfs", _checkout(store, "debian:edited", tmp_path / "co"))
    assert got == []


# -- podman save -> layerctl load ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_layerctl_loads_what_podman_saves(store, podman, tmp_path, fmt):
    podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
    out = tmp_path / "p.tar"
    podman("save", "--format", fmt, "-o", out, "localhost/pm:two")
    loaded = load(store, str(out))
    assert [str(t) for t in loaded[0].tags] == ["localhost/pm:two"]
    layers = chain(store, loaded[0].top)
    assert [x.source_diff_id or x.diff_id for x in layers] == (
        podman.inspect("localhost/pm:two")["RootFS"]["Layers"])
    mount = podman("image", "mount", "localhost/pm:two")
    try:
        got = compare(_checkout(store, "localhost/pm:two", tmp_path / "co"), mount,
                      ignore=PODMAN_ROOT)
    finally:
        podman("image", "unmount", "localhost/pm:two")
    assert got == []
    events = []
    load(store, str(out), events.append)  # again: every layer found by chain
    assert [e.status for e in events] == ["exists", "exists"]


def test_layerctl_loads_podmans_debian(debian_rootfs, store, podman, tmp_path):
    _podman_two_layers_debian(podman, debian_rootfs, tmp_path)
    for fmt in ("docker-archive", "oci-archive"):
        out = tmp_path / f"{fmt}.tar"
        podman("save", "--format", fmt, "-o", out, "localhost/deb:two")
        target = Store(str(tmp_path / f"store-{fmt}"))
        try:
            load(target, str(out))
            mount = podman("image", "mount", "localhost/deb:two")
            try:
                got = compare(_checkout(target, "localhost/deb:two", tmp_path / f"co-{fmt}"),
                              mount, ignore=PODMAN_ROOT)
            finally:
                podman("image", "unmount", "localhost/deb:two")
            assert got == []
        finally:
            target.close()


def _podman_debian_edit(merged: Path) -> None:
    (merged / "etc/motd").write_text("changed\n")
    shutil.rmtree(merged / "usr/share/doc")
    shutil.rmtree(merged / "var/log/apt")
    (merged / "var/log/apt").mkdir()
    (merged / "var/log/apt/new.log").write_text("log\n")
    os.chmod(merged / "usr/bin/passwd", 0o755)


def _podman_two_layers_debian(podman: Podman, rootfs: Path, tmp_path: Path) -> None:
    podman_two_layers(podman, rootfs, tmp_path, "deb", _podman_debian_edit)


# -- track ------------------------------------------------------------------------------------


def test_track_a_podman_container(store, podman, tmp_path):
    podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
    podman("create", "--name", "web", "localhost/pm:two", "/bin/true")
    merged = Path(podman("mount", "web"))
    try:
        c, layer_id = track(store, "podman:web")
        assert c.name == "web"
        assert read_layer(store, layer_id).root == read_layer(
            store, resolve(store, "localhost/pm:two")).root
        (merged / "etc/tracked").write_text("new\n")
        (merged / "etc/os-release").write_text("ID=tracked\n")
        os.unlink(merged / "etc/another-link")
        shutil.rmtree(merged / "secret")
        os.chmod(merged / "big", 0o600)
        changes = {ch.path: ch.status for ch in containers.status(store, "web")}
        for path, status in ((b"etc/tracked", "A"), (b"etc/os-release", "C"),
                             (b"etc/another-link", "D"), (b"secret", "D"), (b"big", "C")):
            assert changes.get(path) == status, (path, changes)
        result = containers.commit(store, "web", message="tracked changes")
        assert containers.status(store, "web") == []
        got = compare(_checkout(store, result.layer_id, tmp_path / "co"), merged)
        assert got == []
        with pytest.raises(Exception, match="tracks podman container web"):
            containers.reset(store, "web")
    finally:
        podman("umount", "web")
    containers.remove(store, "web")
    assert Path(podman("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", "web")).is_dir()


def test_track_cli_and_docker_without_an_engine(cli, podman, tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERCTL_DOCKER", "/nonexistent/docker")
    proc = cli("track", "docker:web", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("layerctl: cannot track docker containers: "
                                   "/nonexistent/docker is not installed")
    podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
    podman("create", "--name", "cli-web", "localhost/pm:two", "/bin/true")
    cli("track", "podman:cli-web")
    merged = Path(podman("mount", "cli-web"))
    try:
        (merged / "hello").write_text("hi\n")
        assert "A /hello" in cli("status", "cli-web").stdout
        cli("commit", "-m", "from podman", "cli-web", "tracked:1")
        out = tmp_path / "x.tar"
        cli("export", "tracked:1", "-o", out)
        assert tarfile.open(out).getmember("hello").size == 3
    finally:
        podman("umount", "cli-web")


# -- opaque directories ---------------------------------------------------------------------


def test_replaced_directory_has_no_ghost_entries_in_podman(store, podman, tmp_path):
    """rm -rf a directory and re-create it with other files in a container: the layer tar
    holds the opaque marker alone with the new children (no explicit whiteouts beside it,
    which podman turns into entries that list but cannot be stat'ed), and podman's view
    equals layerctl's checkout."""
    src = make_tree(tmp_path / "src")
    doc = src / "usr" / "share" / "doc"
    (doc / "apt").mkdir(parents=True, exist_ok=True)
    for name in ("adduser", "bash", "apt/changelog"):
        (doc / name).write_text(name + "\n")
    import_dir(store, src, "ghost:base")
    c, _notice = containers.create(store, "ghost:base", driver="overlay")
    root = containers.mount(store, c.name)
    shutil.rmtree(os.path.join(root, "usr/share/doc"))
    os.makedirs(os.path.join(root, "usr/share/doc/apt"))
    Path(root, "usr/share/doc/README").write_text("hi\n")
    Path(root, "usr/share/doc/apt/NEWS").write_text("news\n")
    containers.commit(store, c.name, message="replace docs", tag="ghost:1")
    out = tmp_path / "ghost.tar"
    save(store, ["ghost:1"], str(out))
    with tarfile.open(out) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        top = tarfile.open(fileobj=archive.extractfile(manifest[0]["Layers"][-1]))
        names = top.getnames()
    doc_entries = sorted(n for n in names if n.startswith("usr/share/doc/"))
    gone = [f"usr/share/doc/.wh.{n}" for n in os.listdir(doc) if n not in ("apt", "README")]
    assert "usr/share/doc/.wh.bash" in gone  # doc keeps apt/: not opaque, explicit whiteouts
    assert doc_entries == sorted([*gone, "usr/share/doc/README", "usr/share/doc/apt",
                                  "usr/share/doc/apt/.wh..wh..opq", "usr/share/doc/apt/NEWS"])
    podman("load", "-i", out)
    mount = podman("image", "mount", "ghost:1")
    try:
        assert sorted(os.listdir(os.path.join(mount, "usr/share/doc/apt"))) == ["NEWS"]
        got = compare(_checkout(store, "ghost:1", tmp_path / "co"), mount, ignore=PODMAN_ROOT)
    finally:
        podman("image", "unmount", "ghost:1")
    assert got == []
