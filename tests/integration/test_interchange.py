"""save / load / export without outside tools: round trips (same tree ids), byte-identical
saves, reuse of stored layers, both docker-archive layouts, OCI layouts, export."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from layerctl.changeset.tar import changeset_changes
from layerctl.changeset.write import write_changeset
from layerctl.errors import BadInput
from layerctl.images import chain, image_id, parse_name, resolve, set_tag
from layerctl.oci.archive.export import export
from layerctl.oci.archive.load import load
from layerctl.oci.archive.save import save
from layerctl.store.blobread import BlobReader
from layerctl.store.layers import read_layer
from tests.interchange_helpers import (
    file_info,
    fingerprint,
    json_bytes,
    layer_ids,
    make_tree,
    read_tar,
    roots,
    top_layer,
    write_tar,
)
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.paths import REPO_ROOT
from tests.treecompare import compare

FORMATS = [("docker-archive", "none"), ("docker-archive", "gzip"), ("oci", "gzip"),
           ("oci", "zstd"), ("oci-dir", "none"), ("oci-dir", "zstd")]


def _out(tmp_path: Path, fmt: str, name: str = "out") -> str:
    return str(tmp_path / (name if fmt == "oci-dir" else name + ".tar"))


# -- the changeset tar --------------------------------------------------------------------


def test_changeset_hashes_what_it_writes_and_serves_kept_contents_first(store, image):
    # The one changeset writer: its DiffID is the sha256 of the bytes written and the
    # one recorded at commit. Contents still in memory after an apply (import, pull)
    # are served before the packs: poisoned kept bytes must show up in the tar.
    layers = chain(store, image[-1])
    for parent, layer in ((None, layers[0]), (layers[0], layers[1])):
        out = io.BytesIO()
        p = parent.root if parent else None
        got, size = write_changeset(store, p, layer.root, out)
        assert got == layer.diff_id == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
        assert size == len(out.getvalue())
        blobs = {c.new_blob for c in changeset_changes(store, p, layer.root)
                 if c.new_blob and c.new is not None and c.new.kind == "-" and c.new.size}
        kept = {b: b"poison" for b in blobs}
        poisoned = io.BytesIO()
        with BlobReader.for_store(store, kept=kept) as reader:
            bad, _ = write_changeset(store, p, layer.root, poisoned, reader)
        assert bad != got and poisoned.getvalue().count(b"poison") == len(blobs) > 0


def test_root_metadata_travels_as_dot_entry(store, image):
    base, top = chain(store, image[-1])
    names = [m.name for m in tarfile.open(fileobj=_tar(store, None, base.root))]
    assert names[0] == "."  # "./": the source dir is 0750 with its own mtime
    names = [m.name for m in tarfile.open(fileobj=_tar(store, base.root, top.root))]
    assert names[0] == "."  # the edit changed the root's mtime


def test_directories_holding_changes_come_with_their_metadata(store, image):
    base, top = chain(store, image[-1])
    members = {m.name: m for m in tarfile.open(fileobj=_tar(store, base.root, top.root))}
    names = list(members)
    # etc itself did not change, but it holds etc/added: overlay engines need its metadata
    assert names.index("etc") < names.index("etc/added")
    assert int(members["etc"].mtime) == 1_700_000_000 and members["etc"].isdir()
    assert names.index("var/cache") < names.index("var/cache/apt")  # var/cache: parent of
    assert "var/cache/apt/.wh..wh..opq" in names  # an opaque directory
    # usr/share lost its only entry and gained none: emptied, not replaced, so an
    # explicit whiteout (as `rm` gives in Docker), no opaque marker
    assert "usr/.wh.share" not in names and "usr/share/.wh.doc" in names
    assert "usr/share/.wh..wh..opq" not in names
    assert names.index("usr/share") < names.index("usr/share/.wh.doc")
    # an opaque directory's marker stands alone (an explicit whiteout beside it would
    # become a whiteout device inside the opaque dir in podman)
    whiteouts = {n.rpartition("/")[0] for n in names if "/.wh." in "/" + n}
    opaque = {n.rpartition("/")[0] for n in names if n.endswith(".wh..wh..opq")}
    assert all(sum(1 for n in names if n.startswith(d + "/.wh.")) == 1 for d in opaque), (
        "an opaque directory has explicit whiteouts beside its marker")
    assert whiteouts >= opaque


def _tar(store, parent, root) -> io.BytesIO:
    out = io.BytesIO()
    write_changeset(store, parent, root, out)
    out.seek(0)
    return out


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,compress", FORMATS)
def test_round_trip_gives_the_same_trees(store, fresh, image, tmp_path, fmt, compress):
    out = _out(tmp_path, fmt)
    save(store, ["test/app:1"], out, fmt, compress)
    loaded = load(fresh, out)
    assert [str(t) for t in loaded[0].tags] == ["test/app:1"]
    assert roots(fresh, "test/app:1") == roots(store, "test/app:1")
    got, want = chain(fresh, loaded[0].top), chain(store, image[-1])
    assert [x.diff_id for x in got] == [x.diff_id for x in want]
    assert [x.source_diff_id for x in got] == ["", ""]
    assert [(x.author, x.author_time, x.message, x.created_by) for x in got] == [
        (x.author, x.author_time, x.message, x.created_by) for x in want
    ]
    assert got[-1].config == want[-1].config
    assert image_id(got) == image_id(want)
    fsck = subprocess.run(["git", "--git-dir", fresh.root, "fsck", "--strict"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    assert not [n for n in os.listdir(Path(fresh.root) / "objects") if n.startswith("incoming")]


def test_round_trip_of_the_debian_image(debian_rootfs, store, fresh, tmp_path):
    base = import_dir(store, debian_rootfs, "debian:base")
    commit_edit(store, base, _debian_edit, name="debian:edited", message="changes")
    out = tmp_path / "debian.tar"
    save(store, ["debian:edited"], str(out))
    load(fresh, str(out))
    assert roots(fresh, "debian:edited") == roots(store, "debian:edited")
    assert layer_ids(fresh, "debian:edited")[0] == layer_ids(store, "debian:edited")[0]


def _debian_edit(editor, writer):
    from layerctl.store.meta import DIR, Meta

    put_file(editor, writer, b"etc/motd", b"changed\n")
    put_file(editor, writer, b"usr/local/bin/hello", b"#!/bin/sh\necho hi\n", mode=0o755)
    editor.delete(b"usr/share/doc")
    editor.clear_dir(b"var/log/apt")
    put_file(editor, writer, b"var/log/apt/new.log", b"log\n")
    meta, blob = editor.get(b"usr/bin/passwd")
    editor.set_file(b"usr/bin/passwd", Meta(meta.kind, 0o755, 0, 0, meta.mtime_ns, meta.size),
                    blob)
    editor.set_dir(b"tmp", Meta(DIR, 0o1777, 0, 0, 1))


@pytest.mark.parametrize("fmt,compress", FORMATS)
def test_save_is_byte_identical_twice(store, image, tmp_path, fmt, compress):
    a, b = _out(tmp_path, fmt, "a"), _out(tmp_path, fmt, "b")
    save(store, ["test/app:1"], a, fmt, compress)
    save(store, ["test/app:1"], b, fmt, compress)
    if fmt == "oci-dir":
        assert fingerprint(Path(a)) == fingerprint(Path(b))
    else:
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_docker_archive_layout(store, image, tmp_path):
    out = tmp_path / "a.tar"
    save(store, ["test/app:1"], str(out))
    members = read_tar(out)
    manifest = json.loads(members["manifest.json"][1])
    assert manifest[0]["RepoTags"] == ["test/app:1"]
    config = json.loads(members[manifest[0]["Config"]][1])
    layers = chain(store, image[-1])
    assert config["rootfs"]["diff_ids"] == [x.diff_id for x in layers]
    assert "sha256:" + manifest[0]["Config"][:-5] == image_id(layers)
    assert [h.get("comment") for h in config["history"]] == ["base", "edit\n\nsecond paragraph"]
    repositories = json.loads(members["repositories"][1])
    assert list(repositories) == ["test/app"]
    assert all(info.mtime == 0 and info.uid == 0 for info, _ in members.values())


def test_stdout_output_equals_file_output(store, image, tmp_path, monkeypatch):
    out = tmp_path / "f.tar"
    save(store, ["test/app:1"], str(out), "oci", "zstd")
    env = dict(os.environ, LAYERCTL_ROOT=store.root, PYTHONPATH=str(REPO_ROOT))
    piped = subprocess.run(
        [sys.executable, "-m", "layerctl", "save", "-q", "--format", "oci", "--compress", "zstd",
         "test/app:1"], capture_output=True, env=env, check=True,
    ).stdout
    assert piped == out.read_bytes()


# -- load: reuse, tags, variants --------------------------------------------------------


def test_load_twice_reuses_every_layer(store, fresh, image, tmp_path):
    out = tmp_path / "a.tar"
    save(store, ["test/app:1"], str(out))
    first = load(fresh, str(out))
    before = fingerprint(Path(fresh.root))
    events = []
    again = load(fresh, str(out), events.append)
    assert again[0].layer_ids == first[0].layer_ids
    assert again[0].existed == [True, True]
    assert [e.status for e in events] == ["exists", "exists"]
    assert fingerprint(Path(fresh.root)) == before


def test_load_into_the_source_store_reuses_its_layers(store, image, tmp_path):
    out = tmp_path / "a.tar"
    save(store, ["test/app:1"], str(out))
    loaded = load(store, str(out))
    assert loaded[0].layer_ids == image
    assert loaded[0].existed == [True, True]


def test_shared_base_and_several_tags(store, fresh, image, tmp_path):
    other = commit_edit(store, image[0], lambda e, w: put_file(e, w, b"other", b"x"),
                        name="test/other:2")
    set_tag(store, parse_name("test/app:latest"), image[-1])
    out = tmp_path / "a.tar"
    save(store, ["test/app:1", "test/app:latest", "test/other:2"], str(out))
    members = read_tar(out)
    assert sum(name.endswith("/layer.tar") for name in members) == 3  # the base once
    loaded = load(fresh, str(out))
    assert sorted(str(t) for img in loaded for t in img.tags) == [
        "test/app:1", "test/app:latest", "test/other:2"]
    assert loaded[0].layer_ids[0] == loaded[1].layer_ids[0]
    assert read_layer(fresh, resolve(fresh, "test/other:2")).root == read_layer(store, other).root


def test_same_layers_with_another_config_get_their_own_top(store, fresh, image, tmp_path):
    out = tmp_path / "a.tar"
    save(store, ["test/app:1"], str(out))
    load(fresh, str(out))
    members = read_tar(out)
    manifest = json.loads(members["manifest.json"][1])
    config = json.loads(members[manifest[0]["Config"]][1])
    config["config"] = {"Cmd": ["/bin/true"]}
    raw = json_bytes(config)
    del members[manifest[0]["Config"]]
    manifest[0]["Config"] = "other.json"
    manifest[0]["RepoTags"] = ["test/app:cmd"]
    members["other.json"] = (file_info("other.json"), raw)
    members["manifest.json"] = (file_info("manifest.json"), json_bytes(manifest))
    loaded = load(fresh, str(write_tar(tmp_path / "b.tar", members)))
    assert loaded[0].existed == [True, True]
    top, plain = top_layer(fresh, "test/app:cmd"), top_layer(fresh, "test/app:1")
    assert top.id != plain.id and top.root == plain.root and top.parent == plain.parent
    assert top.config["config"] == {"Cmd": ["/bin/true"]}


def test_docker25_archive_with_oci_layout_inside(store, fresh, image, tmp_path):
    layout = tmp_path / "layout"
    save(store, ["test/app:1"], str(layout), "oci-dir", "none")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" /
                           index["manifests"][0]["digest"][7:]).read_text())
    (layout / "manifest.json").write_text(json.dumps([{
        "Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
        "RepoTags": ["docker25/app:1"],
        "Layers": ["blobs/sha256/" + d["digest"][7:] for d in manifest["layers"]],
    }]))
    out = tmp_path / "d25.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(out), "."], check=True)
    loaded = load(fresh, str(out))
    assert [str(t) for t in loaded[0].tags] == ["docker25/app:1"]
    assert roots(fresh, "docker25/app:1") == roots(store, "test/app:1")


def test_podman_style_links_inside_the_archive(store, fresh, image, tmp_path):
    out = tmp_path / "a.tar"
    save(store, ["test/app:1"], str(out))
    members = read_tar(out)
    manifest = json.loads(members["manifest.json"][1])
    for path in manifest[0]["Layers"]:  # <id>/layer.tar -> ../<diffid>.tar, as podman does
        info, data = members.pop(path)
        flat = path.split("/")[0] + ".tar"
        members[flat] = (file_info(flat), data)
        link = tarfile.TarInfo(path)
        link.type, link.linkname = tarfile.SYMTYPE, "../" + flat
        members[path] = (link, None)
    load(fresh, str(write_tar(tmp_path / "b.tar", members)))
    assert roots(fresh, "test/app:1") == roots(store, "test/app:1")


def test_compressed_archive_and_stdin(store, fresh, image, tmp_path):
    out = tmp_path / "a.tar"
    save(store, ["test/app:1"], str(out))
    gz = tmp_path / "a.tar.gz"
    gz.write_bytes(gzip.compress(out.read_bytes()))
    load(fresh, str(gz))
    assert roots(fresh, "test/app:1") == roots(store, "test/app:1")
    env = dict(os.environ, LAYERCTL_ROOT=str(tmp_path / "third"),
               PYTHONPATH=str(REPO_ROOT))
    with open(gz, "rb") as f:
        proc = subprocess.run([sys.executable, "-m", "layerctl", "load"], stdin=f, env=env,
                              capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Loaded image: test/app:1\n"


def test_untagged_oci_entry_loads_untagged(store, fresh, image, tmp_path):
    layout = tmp_path / "layout"
    save(store, [image[-1]], str(layout), "oci-dir", "gzip")
    index = json.loads((layout / "index.json").read_text())
    assert "annotations" not in index["manifests"][0]
    loaded = load(fresh, str(layout))
    assert loaded[0].tags == [] and fresh.refs_under("refs/images/") == {}
    assert read_layer(fresh, loaded[0].top).root == read_layer(store, image[-1]).root


def test_layout_with_bare_ref_name_and_containerd_name(store, fresh, image, tmp_path):
    layout = tmp_path / "layout"
    save(store, ["test/app:1"], str(layout), "oci-dir", "none")
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][0]
    index["manifests"] = [
        dict(entry, annotations={"org.opencontainers.image.ref.name": "latest"}),
        dict(entry, annotations={"io.containerd.image.name": "docker.io/library/app:2",
                                 "org.opencontainers.image.ref.name": "2"}),
    ]
    (layout / "index.json").write_text(json.dumps(index))
    loaded = load(fresh, str(layout))
    assert len(loaded) == 1
    assert [str(t) for t in loaded[0].tags] == ["docker.io/library/app:2"]


def test_save_refuses_whiteout_names(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / ".wh.file").write_text("a real file")
    import_dir(store, src, "wh:1")
    with pytest.raises(BadInput, match=r"/\.wh\.file: a layer tar cannot hold"):
        save(store, ["wh:1"], str(tmp_path / "x.tar"))
    assert not (tmp_path / "x.tar").exists()
    assert not any(p.name.startswith(".x.tar") for p in tmp_path.iterdir())


# -- export ------------------------------------------------------------------------------


def _extract(tar: Path, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf",
                    str(tar), "-C", str(dest)], check=True)
    return dest


@pytest.mark.needs_root
def test_export_layer_equals_checkout(store, image, tmp_path):
    from layerctl.store.checkout import checkout

    out = tmp_path / "x.tar"
    export(store, "test/app:1", str(out))
    got = _extract(out, tmp_path / "got")
    want = tmp_path / "want"
    checkout(store, read_layer(store, image[-1]).root, str(want))
    assert compare(got, want) == []


@pytest.mark.needs_root
@pytest.mark.parametrize("driver", ["vfs", "overlay"])
def test_export_container_with_pending_changes(store, image, tmp_path, driver):
    from layerctl import containers

    c, _ = containers.create(store, "test/app:1", name="exp", driver=driver)
    merged = containers.mount(store, "exp")
    try:
        Path(merged, "etc/hostname").write_text("changed\n")
        Path(merged, "new-dir").mkdir()
        Path(merged, "new-dir/file").write_text("x")
        os.unlink(Path(merged, "link"))
        before = fingerprint(Path(store.root) / "objects")
        out = tmp_path / "x.tar"
        export(store, "exp", str(out))
        assert fingerprint(Path(store.root) / "objects") == before  # nothing stored
        got = _extract(out, tmp_path / "got")
        assert compare(got, merged) == []
    finally:
        containers.umount(store, "exp")
        containers.remove(store, "exp", force=True)


def test_cli_save_load_export(cli, store_root, tmp_path):
    src = make_tree(tmp_path / "src")
    cli("import", src, "cli/app:1")
    out = tmp_path / "a.tar"
    proc = cli("save", "-o", out, "cli/app:1")
    assert "Saved image" in proc.stderr
    assert out.is_file()
    fresh = tmp_path / "fresh"
    proc = cli("load", "-i", out, env={"LAYERCTL_ROOT": str(fresh)})
    assert proc.stdout == "Loaded image: cli/app:1\n"
    assert "Loading layer" in proc.stderr
    proc = cli("load", "-i", out, env={"LAYERCTL_ROOT": str(fresh)})
    assert "already exists" in proc.stderr
    x = tmp_path / "x.tar"
    cli("export", "cli/app:1", "-o", x)
    assert tarfile.open(x).getmember("etc/os-release").size == 8
    proc = cli("load", "-i", tmp_path / "missing.tar", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("layerctl: cannot open")
    assert len(proc.stderr.splitlines()) == 1


def test_edit_layer_is_visible_in_the_diff(store, image):
    from layerctl.store.diff import diff

    base, top = chain(store, image[-1])
    changes = {c.path: c for c in diff(store, base.root, top.root)}
    assert changes[b"var/cache/apt"].opaque
    assert changes[b"secret"].status == "C"
    assert changes[b"usr/share/doc"].status == "D"


def test_fsck_notes_a_stale_diff_id_and_save_stays_consistent(store, image, tmp_path):
    """A layer whose DiffID trailer is not its changeset's (an older writer's, or a tampered
    one) is named by fsck; save sends it with the DiffID of the tar it writes."""
    from layerctl.fsck import stale_diff_ids
    from layerctl.importer import commit_root

    assert stale_diff_ids(store) == []
    top = read_layer(store, image[-1])
    base = read_layer(store, image[0])
    wrong = "sha256:" + "0" * 64
    stale = commit_root(store, top.root, base.root, base.id, top.config, "A <a@b>", "old",
                        "test", 0, diff_id=wrong)
    set_tag(store, parse_name("test/stale:1"), stale)
    notes = stale_diff_ids(store)
    assert len(notes) == 1 and stale[:12] in notes[0] and "sha256:0000000000" in notes[0]
    out = tmp_path / "stale"
    save(store, ["test/stale:1"], str(out), "oci-dir")
    index = json.loads((out / "index.json").read_text())
    manifest = _blob(out, index["manifests"][0]["digest"])
    config = _blob(out, manifest["config"]["digest"])
    sent = manifest["layers"][-1]["digest"].split(":")[1]
    assert hashlib.sha256((out / "blobs" / "sha256" / sent).read_bytes()).hexdigest() == \
        config["rootfs"]["diff_ids"][-1].split(":")[1]
    assert config["rootfs"]["diff_ids"][-1] != wrong


def _blob(layout: Path, digest: str) -> dict:
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
