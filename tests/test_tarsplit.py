"""Byte-exact layer tars (oci.tarsplit) and kept origins (oci.origin): what comes in
through `load` or `pull` goes out of `save` or `push` as it came (DiffIDs, image ID,
blob and manifest digests); a damaged record is caught, never sent."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from layerctl.images import chain, resolve
from layerctl.oci.load import load
from layerctl.oci.save import save
from layerctl.store.repo import Store
from tests.interchange_helpers import make_tree
from tests.test_interchange_tools import Podman, _podman_two_layers, podman  # noqa: F401


@pytest.fixture
def store(tmp_path: Path):
    s = Store(str(tmp_path / "store"))
    yield s
    s.close()


def _archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def _layer_digests(members: dict[str, bytes]) -> list[str]:
    """sha256 of each layer tar of a docker-archive, in manifest order."""
    manifest = json.loads(members["manifest.json"])[0]
    return ["sha256:" + hashlib.sha256(members[p]).hexdigest() for p in manifest["Layers"]]


@pytest.mark.needs_root
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_load_save_podman_load_keeps_identity(store, podman, tmp_path, fmt):
    _podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
    original = podman.inspect("localhost/pm:two")
    src = tmp_path / "p.tar"
    podman("save", "--format", fmt, "-o", src, "localhost/pm:two")
    load(store, str(src))
    out = tmp_path / "l.tar"
    save(store, ["localhost/pm:two"], str(out))
    members = _archive_members(out)
    assert _layer_digests(members) == original["RootFS"]["Layers"]
    podman("rmi", "-af")
    podman("load", "-i", out)
    again = podman.inspect("localhost/pm:two")
    assert again["Id"] == original["Id"]
    assert again["RootFS"]["Layers"] == original["RootFS"]["Layers"]
