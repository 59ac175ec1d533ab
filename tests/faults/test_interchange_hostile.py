"""Hostile archives (the archive level; hostile layer tars are tarapply's tests): each is
refused with one line naming the archive and the file, and the store is left exactly
as it was."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from layerctl.errors import BadInput
from layerctl.oci import model as image_mod
from layerctl.oci.archive.load import load
from layerctl.oci.archive.save import save
from layerctl.store.repo import Store
from tests.interchange_helpers import (
    file_info,
    fingerprint,
    json_bytes,
    make_tree,
    read_tar,
    two_layer_image,
    write_tar,
)

Members = dict[str, tuple[tarfile.TarInfo, bytes | None]]


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """A valid docker-archive and OCI layout (dir, uncompressed) of a two-layer image."""
    top = tmp_path_factory.mktemp("hostile")
    s = Store(str(top / "src-store"))
    two_layer_image(s, make_tree(top / "src"))
    out = {"docker": top / "docker.tar", "oci": top / "layout"}
    save(s, ["test/app:1"], str(out["docker"]))
    save(s, ["test/app:1"], str(out["oci"]), "oci-dir", "none")
    s.close()
    return out


@pytest.fixture
def store(tmp_path: Path):
    s = Store(str(tmp_path / "store"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("already here\n")
    from tests.layerhelpers import import_dir

    import_dir(s, tmp_path / "other", "already:here")  # the store is not empty
    yield s
    s.close()


def _refused(store: Store, source: Path, *needles: str) -> str:
    before = fingerprint(Path(store.root))
    with pytest.raises(BadInput) as e:
        load(store, str(source))
    message = str(e.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    assert fingerprint(Path(store.root)) == before
    return message


def _docker(archives, tmp_path: Path, change: Callable[[Members, list], None]) -> Path:
    members = read_tar(archives["docker"])
    manifest = json.loads(members["manifest.json"][1])
    change(members, manifest)
    members["manifest.json"] = (file_info("manifest.json"), json_bytes(manifest))
    return write_tar(tmp_path / "bad.tar", members)


def _layer_paths(manifest: list) -> list[str]:
    return manifest[0]["Layers"]


# -- docker-archive --------------------------------------------------------------------


def test_layer_path_leaving_the_archive(store, archives, tmp_path):
    def change(members, manifest):
        manifest[0]["Layers"][0] = "../../etc/passwd"

    _refused(store, _docker(archives, tmp_path, change), "bad.tar",
             "manifest.json[0].Layers[0]", "'../../etc/passwd' leaves the archive")


def test_absolute_config_path(store, archives, tmp_path):
    def change(members, manifest):
        manifest[0]["Config"] = "/etc/passwd"

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", "'/etc/passwd' leaves")


def test_symlink_member_leaving_the_archive(store, archives, tmp_path):
    def change(members, manifest):
        path = _layer_paths(manifest)[1]
        link = tarfile.TarInfo(path)
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/shadow"
        members[path] = (link, None)

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", "leaves the archive")


def test_missing_layer(store, archives, tmp_path):
    def change(members, manifest):
        del members[_layer_paths(manifest)[1]]

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", "/layer.tar: missing from "
             "the archive")


def test_missing_config(store, archives, tmp_path):
    def change(members, manifest):
        del members[manifest[0]["Config"]]

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", ".json: missing")


def test_diffid_mismatch(store, archives, tmp_path):
    def change(members, manifest):
        path = _layer_paths(manifest)[1]
        info, data = members[path]
        extra = io.BytesIO()
        with tarfile.open(fileobj=extra, mode="w") as tar:
            t = tarfile.TarInfo("smuggled")
            t.size = 4
            tar.addfile(t, io.BytesIO(b"evil"))
        members[path] = (info, extra.getvalue())

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", "/layer.tar: DiffID mismatch")


def test_config_digest_mismatch(store, archives, tmp_path):
    def change(members, manifest):
        name = manifest[0]["Config"]
        info, data = members[name]
        members[name] = (info, data.replace(b'"os":"linux"', b'"os":"linux" '))

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", "digest mismatch")


@pytest.mark.parametrize("text", [b"[{", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b"{}"])
def test_malformed_manifest(store, archives, tmp_path, text):
    members = read_tar(archives["docker"])
    members["manifest.json"] = (file_info("manifest.json"), text)
    message = _refused(store, write_tar(tmp_path / "bad.tar", members), "bad.tar: manifest.json")
    assert "malformed JSON" in message or "expected a list" in message


def test_malformed_config(store, archives, tmp_path):
    def change(members, manifest):
        config = manifest[0]["Config"] = "c.json"
        members[config] = (file_info(config), b'{"rootfs": {"type": "layers", "diff_ids": 3}}')

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", "c.json",
             "rootfs.diff_ids must be a list")


def test_diff_ids_do_not_match_layers(store, archives, tmp_path):
    def change(members, manifest):
        manifest[0]["Layers"] = manifest[0]["Layers"][:1]

    _refused(store, _docker(archives, tmp_path, change), "lists 1 layers", "has 2 rootfs.diff_ids")


def test_bad_tag(store, archives, tmp_path):
    def change(members, manifest):
        manifest[0]["RepoTags"] = ["UPPER/Case:1"]

    _refused(store, _docker(archives, tmp_path, change), "RepoTags", "invalid image name")


def test_huge_manifest(store, archives, tmp_path):
    members = read_tar(archives["docker"])
    members["manifest.json"] = (file_info("manifest.json"), b" " * (image_mod.MAX_JSON_BYTES + 1))
    _refused(store, write_tar(tmp_path / "bad.tar", members), "manifest.json",
             "larger than the limit")


def test_absurd_number_of_layers(store, archives, tmp_path):
    def change(members, manifest):
        manifest[0]["Layers"] = manifest[0]["Layers"] * 600

    _refused(store, _docker(archives, tmp_path, change), "more than the limit of 1000")


def test_member_size_beyond_the_end(store, archives, tmp_path):
    good = archives["docker"].read_bytes()
    members = read_tar(archives["docker"])
    manifest = json.loads(members["manifest.json"][1])
    path = _layer_paths(manifest)[1]
    cut = good.index(path.encode()) + 512 + 1024  # a bit into the layer's content
    (tmp_path / "bad.tar").write_bytes(good[:cut])
    message = _refused(store, tmp_path / "bad.tar", "bad.tar")
    assert "truncated" in message or "missing" in message


def test_not_an_archive(store, tmp_path):
    (tmp_path / "bad.tar").write_bytes(b"hello, not a tar at all" * 100)
    _refused(store, tmp_path / "bad.tar", "bad.tar", "not a")


def test_legacy_archive_without_manifest(store, tmp_path):
    members = {"repositories": (file_info("repositories"), b'{"a": {"1": "x"}}')}
    _refused(store, write_tar(tmp_path / "bad.tar", members), "Docker < 1.10")


def test_hostile_layer_tar_is_named(store, archives, tmp_path):
    def change(members, manifest):
        path = _layer_paths(manifest)[1]
        info, _ = members[path]
        evil = io.BytesIO()
        with tarfile.open(fileobj=evil, mode="w") as tar:
            t = tarfile.TarInfo("../escape")
            t.size = 1
            tar.addfile(t, io.BytesIO(b"x"))
        members[path] = (info, evil.getvalue())

    _refused(store, _docker(archives, tmp_path, change), "bad.tar", "/layer.tar: tar entry",
             "'..'")


# -- OCI layout --------------------------------------------------------------------------


def _layout(archives, tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "layout"
    shutil.copytree(archives["oci"], dest)
    return dest


def _manifest(layout: Path) -> tuple[dict, Path]:
    index = json.loads((layout / "index.json").read_text())
    path = layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    return json.loads(path.read_text()), path


def _rewrite_manifest(layout: Path, manifest: dict) -> None:
    data = json_bytes(manifest)
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest="sha256:" + digest, size=len(data))
    (layout / "index.json").write_text(json.dumps(index))


def test_layer_digest_mismatch(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    manifest, _ = _manifest(layout)
    blob = layout / "blobs/sha256" / manifest["layers"][1]["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[2000] ^= 0xFF  # inside a file's content: the tar itself stays valid
    blob.write_bytes(bytes(data))
    _refused(store, layout, "layout: blobs/sha256/", "digest mismatch")


def test_missing_blob(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    manifest, _ = _manifest(layout)
    (layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]).unlink()
    _refused(store, layout, "blobs/sha256/", "missing from the layout")


def test_manifest_digest_mismatch(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    _manifest_data, path = _manifest(layout)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    _refused(store, layout, "size mismatch")


def test_absurd_descriptor_size(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    manifest, _ = _manifest(layout)
    manifest["layers"][0]["size"] = 10**18
    _rewrite_manifest(layout, manifest)
    _refused(store, layout, "layers[0]: invalid size 1000000000000000000")


def test_descriptor_with_other_algorithm(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    manifest, _ = _manifest(layout)
    manifest["layers"][0]["digest"] = "sha512:" + "0" * 128
    _rewrite_manifest(layout, manifest)
    _refused(store, layout, "layers[0]", "invalid digest")


def test_blob_symlink_outside_the_layout(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    manifest, _ = _manifest(layout)
    blob = layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    blob.unlink()
    blob.symlink_to("/etc/passwd")
    _refused(store, layout, "resolves outside the layout directory")


def test_malformed_index(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    (layout / "index.json").write_text('{"manifests": [')
    _refused(store, layout, "index.json", "malformed JSON")


def test_missing_oci_layout_marker(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    (layout / "oci-layout").unlink()
    _refused(store, layout, "oci-layout: missing")


def test_not_an_image_manifest(store, archives, tmp_path):
    layout = _layout(archives, tmp_path)
    manifest, _ = _manifest(layout)
    manifest["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    _rewrite_manifest(layout, manifest)
    _refused(store, layout, "not a container image")


def test_bad_second_image_leaves_the_first_unloaded(store, archives, tmp_path):
    """All or nothing: a good image followed by a bad one loads neither."""
    members = read_tar(archives["docker"])
    manifest = json.loads(members["manifest.json"][1])
    config = json.loads(members[manifest[0]["Config"]][1])
    config["rootfs"]["diff_ids"].append("sha256:" + "1" * 64)
    members["bad.json"] = (file_info("bad.json"), json_bytes(config))
    members["extra.tar"] = (file_info("extra.tar"), b"\0" * 1024)  # an empty tar
    manifest.append(dict(manifest[0], RepoTags=["test/bad:1"], Config="bad.json",
                         Layers=[*manifest[0]["Layers"], "extra.tar"]))
    members["manifest.json"] = (file_info("manifest.json"), json_bytes(manifest))
    _refused(store, write_tar(tmp_path / "bad.tar", members), "extra.tar: DiffID mismatch")
