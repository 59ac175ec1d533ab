"""Byte-exact layer tars (oci.tarsplit) and kept origins (oci.origin): what comes in
through `load` or `pull` goes out of `save` or `push` as it came (DiffIDs, image ID,
blob and manifest digests); a damaged record is caught, never sent."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerctl.images import chain, image_id, resolve
from layerctl.oci.archive.load import load
from layerctl.oci.archive.save import save
from layerctl.store.repo import Store
from tests.interchange_helpers import make_tree, podman_two_layers


@pytest.fixture
def store(store_root: Path):
    s = Store(str(store_root))  # the store the `cli` fixture runs on
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
def test_podman_save_load_save_podman_load_keeps_identity(store, podman, tmp_path, fmt, cli):
    podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
    original = podman.inspect("localhost/pm:two")
    src = tmp_path / "p.tar"
    podman("save", "--format", fmt, "-o", src, "localhost/pm:two")
    loaded = load(store, str(src))
    # layerctl names it by the image ID podman gave it (images, inspect, load's message)
    assert image_id(chain(store, loaded[0].top), store) == "sha256:" + original["Id"]
    shown = json.loads(cli("inspect", "localhost/pm:two").stdout)[0]
    assert (shown["Id"], shown["RootFS"]["Layers"]) == (
        "sha256:" + original["Id"], original["RootFS"]["Layers"])
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
    from tests.registryhelpers import serve

    with serve(tmp_path / name) as reg:
        yield reg


@pytest.fixture
def registry_a(tmp_path, needs_tool):
    needs_tool("docker-registry")
    yield from _registry(tmp_path, "reg-a")


@pytest.fixture
def registry_b(tmp_path, needs_tool):
    needs_tool("docker-registry")
    yield from _registry(tmp_path, "reg-b")


@pytest.fixture
def registry_c(tmp_path, needs_tool):
    needs_tool("docker-registry")
    yield from _registry(tmp_path, "reg-c")


def _raw_manifest(ref: str) -> bytes:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, check=True)
    return out.stdout


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.needs_root
def test_pull_then_push_keeps_blob_and_manifest_digests(store, podman, tmp_path, registry_a,
                                                        registry_b, registry_c, needs_tool):
    from layerctl.images import parse_name
    from layerctl.oci.registry.pull import pull
    from layerctl.oci.registry.push import push
    from layerctl.oci.registry.reference import parse_reference

    needs_tool("skopeo")
    podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
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
    # and C, which has nothing and cannot copy from A, gets the original tars (the
    # DiffIDs and image ID stay; only the compressed digests are layerctl's own)
    third = push(store, name, parse_reference(f"{registry_c.host}/pm:two"))
    assert third.pushed == 2
    config = json.loads(subprocess.run(
        ["skopeo", "inspect", "--config", "--tls-verify=false",
         f"docker://{registry_c.host}/pm:two"], capture_output=True, check=True).stdout)
    assert config["rootfs"]["diff_ids"] == podman.inspect("localhost/pm:two")["RootFS"][
        "Layers"]
    raw_c = json.loads(_raw_manifest(f"{registry_c.host}/pm:two"))
    assert raw_c["config"]["digest"] == json.loads(original)["config"]["digest"]
    assert not {d["digest"] for d in raw_c["layers"]} & set(layers)


# -- damaged records ----------------------------------------------------------------------


def _with_record(store: Store, name: str, edit) -> str:
    """A copy of image `name`'s top layer whose tar-split record is `edit(inflated record)`
    (recompressed), tagged `name`; returns the new layer id."""
    import zlib

    from layerctl.images import image_layer, parse_name, set_tag
    from layerctl.store.layers import read_layer, read_source, write_layer

    top = read_layer(store, image_layer(store, parse_name(name)))
    record = read_source(store, top, b"tar-split")
    assert record is not None, "the loaded layer keeps no record"
    source = {b"tar-split": zlib.compress(edit(zlib.decompress(record))),
              b"config.json": read_source(store, top, b"config.json")}
    new = write_layer(store, top.root, top.config, top.parent, top.author, top.message,
                      top.trailers, when=top.author_time, source=source)
    set_tag(store, parse_name(name), new)
    return new


def _flip_mtime(raw: bytes) -> bytes:
    """One digit of the first ustar header's mtime changed (a kept header tampered with)."""
    at = raw.index(b"ustar") - 257 + 136  # the mtime field of that header
    digit = raw[at + 5:at + 6]
    return raw[:at + 5] + (b"1" if digit != b"1" else b"2") + raw[at + 6:]


def _loaded_podman_image(store: Store, podman, tmp_path: Path) -> Path:
    podman_two_layers(podman, make_tree(tmp_path / "src"), tmp_path)
    src = tmp_path / "p.tar"
    podman("save", "--format", "docker-archive", "-o", src, "localhost/pm:two")
    load(store, str(src))
    return src


def _consistent(archive: Path) -> list[str]:
    """The archive's layer DiffIDs, checked against its config (what podman would check)."""
    members = _archive_members(archive)
    manifest = json.loads(members["manifest.json"])[0]
    config = json.loads(members[manifest["Config"]])
    assert config["rootfs"]["diff_ids"] == _layer_digests(members)
    return _layer_digests(members)


@pytest.mark.needs_root
def test_a_tampered_header_record_is_caught_by_fsck_and_save(store, podman, tmp_path, cli):
    from layerctl.fsck import fsck

    _loaded_podman_image(store, podman, tmp_path)
    original = podman.inspect("localhost/pm:two")["RootFS"]["Layers"]
    assert fsck(store)[0] == []
    layer = _with_record(store, "localhost/pm:two", _flip_mtime)
    problems, _count = fsck(store)
    assert len(problems) == 1 and problems[0].startswith(f"layer {layer[:12]} ")
    assert "is damaged: it gives a tar of sha256:" in problems[0]

    # save: a warning, and the layer's own changeset (never the tampered bytes)
    out = tmp_path / "saved.tar"
    saved, blobs = save(store, ["localhost/pm:two"], str(out))
    assert list(blobs.broken) == [layer]
    diff_ids = _consistent(out)
    assert diff_ids[0] == original[0]  # the other layer's record is intact
    top = chain(store, resolve(store, "localhost/pm:two"))[-1]
    assert diff_ids[1] == top.diff_id != original[1]

    # the CLI says so in one line
    proc = cli("save", "-o", tmp_path / "cli.tar", "localhost/pm:two")
    assert f"layerctl: warning: layer {layer[:12]}: its kept original tar is damaged" in (
        proc.stderr)
    assert "Traceback" not in proc.stderr
    proc = cli("fsck", check=False)
    assert proc.returncode == 1 and f"layer {layer[:12]} " in proc.stdout


@pytest.mark.needs_root
def test_a_tampered_header_record_is_never_pushed(store, podman, tmp_path, cli, registry_a):
    from layerctl.oci.registry.pull import pull
    from layerctl.oci.registry.reference import parse_reference

    _loaded_podman_image(store, podman, tmp_path)
    layer = _with_record(store, "localhost/pm:two", _flip_mtime)
    remote = f"{registry_a.host}/pm:two"
    proc = cli("push", "localhost/pm:two", remote)
    assert (f"layerctl: warning: layer {layer[:12]}: its kept original tar is damaged"
            in proc.stderr)
    # what went out is self-consistent: a pull checks every DiffID against the config
    other = Store(str(tmp_path / "other"))
    try:
        pulled = chain(other, pull(other, parse_reference(remote)).layer_id)
    finally:
        other.close()
    top = chain(store, resolve(store, "localhost/pm:two"))[-1]
    assert pulled[-1].sent_diff_id == top.diff_id  # the changeset's, not the record's


def _chmod_header(raw: bytes, name: bytes, mode: bytes) -> bytes:
    """`name`'s ustar header with another mode and a valid checksum."""
    h = raw.index(name + b"\0")
    header = bytearray(raw[h:h + 512])
    header[100:108] = mode.rjust(7, b"0") + b"\0"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return raw[:h] + bytes(header) + raw[h + 512:]


@pytest.mark.needs_root
def test_a_forged_record_with_a_matching_source_diff_id_is_caught_by_fsck_and_fetch(store, podman,
                                                                          tmp_path):
    """A record and a Source-DiffID forged together (as a hostile git remote could serve
    them) hash right; fsck applies the tar and finds it is not the layer's tree."""
    import io
    import zlib

    from layerctl import remotes
    from layerctl.changeset.tar import LayerTarWriter
    from layerctl.changeset.tarsplit import emit
    from layerctl.fsck import fsck
    from layerctl.images import image_layer, parse_name, set_tag
    from layerctl.remotes import RemoteError
    from layerctl.store.blobread import BlobReader
    from layerctl.store.layers import read_layer, read_source, write_layer

    _loaded_podman_image(store, podman, tmp_path)
    original = podman.inspect("localhost/pm:two")
    # an honest record travels with its layer over a git remote and still gives the tar
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    remotes.push(store, str(remote))
    other = Store(str(tmp_path / "other"))
    try:
        remotes.fetch(other, str(remote))
        save(other, ["localhost/pm:two"], str(tmp_path / "other.tar"))
        assert _consistent(tmp_path / "other.tar") == original["RootFS"]["Layers"]
    finally:
        other.close()

    top = read_layer(store, image_layer(store, parse_name("localhost/pm:two")))
    record = read_source(store, top, b"tar-split")
    out = io.BytesIO()
    with BlobReader.for_store(store) as reader:
        emit(record, reader, LayerTarWriter(out))
    forged_tar = _chmod_header(out.getvalue(), b"etc/added", b"600")
    forged_id = _sha(forged_tar)
    inflated = _chmod_header(zlib.decompress(record), b"etc/added", b"600")
    inflated = inflated[:-32] + bytes.fromhex(forged_id[7:])
    trailers = dict(top.trailers, **{"Source-DiffID": forged_id})
    new = write_layer(store, top.root, top.config, top.parent, top.author, top.message,
                      trailers, when=top.author_time,
                      source={b"tar-split": zlib.compress(inflated)})
    set_tag(store, parse_name("localhost/pm:two"), new)
    problems, _count = fsck(store)
    assert problems == [f"layer {new[:12]} (localhost/pm:two): its kept original tar "
                        "(source/tar-split) gives other files than the layer holds; save and "
                        "push send its changeset instead"]
    # and a fetch refuses it: the store that fetches never holds it under a name
    evil = tmp_path / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    remotes.push(store, str(evil))
    target = Store(str(tmp_path / "target"))
    try:
        with pytest.raises(RemoteError, match=r"refusing layer .* its kept original tar "
                           r"\(source/tar-split\) gives other files"):
            remotes.fetch(target, str(evil))
        assert target.refs_under("refs/images/") == {}
    finally:
        target.close()


# -- tars layerctl would never write, given back byte for byte ----------------------------


def _odd_tars() -> list[bytes]:
    """Two layer tars with what layerctl's own writer never produces: GNU long names and
    long link targets, a file listed twice, 10240-byte records, PAX records layerctl
    does not write, a header with space-padded octal fields, bytes after the end."""
    long_dir = "d" * 60 + "/" + "e" * 60

    def add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **kw: object) -> None:
        info = tarfile.TarInfo(name)
        info.mtime = 1_600_000_000
        for key, value in kw.items():
            setattr(info, key, value)
        if data is not None:
            info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data is not None else None)

    one = io.BytesIO()
    with tarfile.open(fileobj=one, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add(tar, "d" * 60, type=tarfile.DIRTYPE, mode=0o755)
        add(tar, long_dir, type=tarfile.DIRTYPE, mode=0o750)
        add(tar, long_dir + "/file", b"long path\n" * 100, mode=0o644)
        add(tar, "twice", b"first\n", mode=0o600)
        add(tar, "twice", b"second, longer\n", mode=0o644)
        add(tar, "link", type=tarfile.SYMTYPE, linkname="/" + "t" * 150)
        add(tar, "hard", type=tarfile.LNKTYPE, linkname=long_dir + "/file")
    two = io.BytesIO()
    with tarfile.open(fileobj=two, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "notes.txt", b"x" * 513, pax_headers={"comment": "made by hand",
                                                         "SCHILY.xattr.user.k": "v"})
        add(tar, ".wh.link", b"")
        add(tar, "d" * 60 + "/.wh..wh..opq", b"")
        add(tar, "d" * 60 + "/new", b"new\n")
        add(tar, "spaced", b"spaced octal\n", mode=0o640)
    raw = bytearray(two.getvalue())
    h = raw.index(b"spaced\0")  # its mode and owner fields as some old writers pad them
    raw[h + 100:h + 108] = b"   640 \0"
    raw[h + 108:h + 116] = b"     0 \0"
    raw[h + 148:h + 156] = b" " * 8
    raw[h + 148:h + 156] = b"%06o\0 " % sum(raw[h:h + 512])
    return [one.getvalue(), bytes(raw) + b"\0" * 4096]


def test_odd_tars_are_given_back_byte_for_byte(store, tmp_path):
    from layerctl.fsck import fsck
    from tests.registryhelpers import write_layout

    tars = _odd_tars()
    layout = tmp_path / "layout"
    write_layout(layout, [{"layers": tars}], tag="odd:1")
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    config = json.loads((layout / "blobs/sha256" / digest).read_text())["config"]["digest"]
    loaded = load(store, str(layout))
    layers = chain(store, loaded[0].top)
    assert [x.source_diff_id for x in layers] == [_sha(t) for t in tars]
    assert all(x.diff_id != x.source_diff_id for x in layers)  # not layerctl's own tars
    out = tmp_path / "saved.tar"
    save(store, [loaded[0].top], str(out))
    members = _archive_members(out)
    manifest = json.loads(members["manifest.json"])[0]
    assert [members[p] for p in manifest["Layers"]] == tars
    assert manifest["Config"] == config.split(":")[1] + ".json"  # the same image ID
    assert fsck(store)[0] == []
