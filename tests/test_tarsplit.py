"""Byte-exact layer tars (oci.tarsplit) and kept origins (oci.origin): what comes in
through `load` or `pull` goes out of `save` or `push` as it came (DiffIDs, image ID,
blob and manifest digests); a damaged record is caught, never sent."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerctl.oci.load import load
from layerctl.oci.save import save
from layerctl.store.repo import Store
from tests import test_interchange_tools as tools
from tests.interchange_helpers import make_tree

podman = tools.podman  # the private-storage podman fixture


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
    tools._podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
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


# -- registries: pull A -> push A / A' / B ------------------------------------------------


def _registry(tmp_path: Path, name: str):
    from tests.registryhelpers import Registry

    reg = Registry(tmp_path / name)
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def registry_a(tmp_path, needs_tool):
    needs_tool("docker-registry")
    yield from _registry(tmp_path, "reg-a")


@pytest.fixture
def registry_b(tmp_path, needs_tool):
    needs_tool("docker-registry")
    yield from _registry(tmp_path, "reg-b")


def _raw_manifest(ref: str) -> bytes:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, check=True)
    return out.stdout


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.needs_root
def test_pull_then_push_keeps_blob_and_manifest_digests(store, podman, tmp_path, registry_a,
                                                        registry_b, needs_tool):
    from layerctl.images import parse_name
    from layerctl.oci.pull import pull
    from layerctl.oci.push import push
    from layerctl.oci.references import parse_reference

    needs_tool("skopeo")
    tools._podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
    src = f"{registry_a.host}/pm:two"
    podman("push", "-q", "--tls-verify=false", "localhost/pm:two", f"docker://{src}")
    original = _raw_manifest(src)
    layers = [d["digest"] for d in json.loads(original)["layers"]]

    pulled = pull(store, parse_reference(src))
    assert pulled.digest == _sha(original)
    name = parse_name(f"{registry_a.host}/pm:two")
    events = []
    # back where it came from: every blob is there, the manifest is the same bytes
    again = push(store, name, parse_reference(src), progress=events.append)
    assert again.digest == _sha(original)
    assert again.pushed == 0
    # another repository of the same registry: mounted, not sent
    events.clear()
    other = push(store, name, parse_reference(f"{registry_a.host}/copy:two"),
                 progress=events.append)
    assert other.digest == _sha(original)
    assert [e.status for e in events if e.status.startswith("Mounted")] == [
        "Mounted from pm", "Mounted from pm"]
    # another registry: the original blobs, copied from A, not layerctl's recompression
    far = push(store, name, parse_reference(f"{registry_b.host}/pm:two"))
    raw_b = _raw_manifest(f"{registry_b.host}/pm:two")
    assert [d["digest"] for d in json.loads(raw_b)["layers"]] == layers
    assert far.digest == _sha(original)
    # with A gone, B's push still finds the blobs by HEAD
    registry_a.stop()
    assert push(store, name, parse_reference(f"{registry_b.host}/pm:three")).digest == _sha(
        original)
