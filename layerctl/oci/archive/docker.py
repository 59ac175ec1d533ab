"""docker-archive: what `docker save` writes and `docker load` reads.

Read: `manifest.json` (a list of {Config, RepoTags, Layers}) naming a config
and layer tars by path; both layouts in use are the same to this reader: the
legacy one (`<id>/layer.tar`, `<config-hex>.json`, `repositories`; podman
links `<id>/layer.tar` to `<diffid>.tar`) and Docker 25's, whose paths point
into an OCI layout in the same tar (`blobs/sha256/<hex>`). Layers may be
plain, gzip or zstd. Archives with only `repositories` (Docker < 1.10) are
refused.

Write: the legacy layout, which every docker, podman and skopeo reads:

    <v1>/layer.tar  <v1>/VERSION  <v1>/json   per layer, <v1> its ChainID's hex
    <config-hex>.json                          the image config (hex = image ID)
    manifest.json   repositories
"""

from __future__ import annotations

import hashlib
import json
import re

from layerctl.errors import BadInput
from layerctl.oci.archive.blobs import BlobInfo, Blobs, SaveImage
from layerctl.oci.archive.fs import ArchiveFS
from layerctl.oci.archive.out import DirOut, TarOut
from layerctl.oci.model import (
    MAX_IMAGES,
    MAX_JSON_BYTES,
    MAX_LAYERS,
    LayerBlob,
    SourceImage,
    load_json,
    sha256_digest,
    tag_of,
)

_HEX_NAME = re.compile(r"^(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$")
_BLOB_PATH = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")


def is_docker_archive(fs: ArchiveFS) -> bool:
    return fs.exists("manifest.json")


def _strings(value: object, where: str, optional: bool = False) -> list[str]:
    if value is None and optional:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{where}: expected a list of strings")
    return value


def read_docker_archive(fs: ArchiveFS) -> list[SourceImage]:
    """The images of a docker-archive, checked for shape and for every file's presence."""
    where = f"{fs.label}: manifest.json"
    entries = load_json(fs.read("manifest.json", MAX_JSON_BYTES), where)
    if not isinstance(entries, list):
        raise BadInput(f"{where}: expected a list of images")
    if len(entries) > MAX_IMAGES:
        raise BadInput(f"{where}: {len(entries)} images, more than the limit of {MAX_IMAGES}")
    images = []
    for i, entry in enumerate(entries):
        label = f"manifest.json[{i}]"
        if not isinstance(entry, dict):
            raise BadInput(f"{where}[{i}]: expected an object")
        config_ref = entry.get("Config")
        if not isinstance(config_ref, str):
            raise BadInput(f"{where}[{i}]: Config must be a path")
        config_path = fs.resolve(config_ref, f"{label}.Config")
        config_raw = fs.read(config_path, MAX_JSON_BYTES)
        m = _HEX_NAME.match(config_path)
        config_digest = "sha256:" + m.group(1) if m else None
        paths = _strings(entry.get("Layers"), f"{where}[{i}].Layers")
        if len(paths) > MAX_LAYERS:
            raise BadInput(f"{where}[{i}]: {len(paths)} layers, more than the limit of "
                           f"{MAX_LAYERS}")
        layers = []
        for j, ref in enumerate(paths):
            path = fs.resolve(ref, f"{label}.Layers[{j}]")
            fs.size(path)  # present, a regular file (links followed within the archive)
            b = _BLOB_PATH.match(path)
            layers.append(LayerBlob(path, "sha256:" + b.group(1) if b else None))
        tags = [tag_of(t, f"{where}[{i}].RepoTags")
                for t in _strings(entry.get("RepoTags"), f"{where}[{i}].RepoTags", True)]
        images.append(SourceImage(label, config_raw, config_path, layers, tags, config_digest))
    return images


# -- writing ---------------------------------------------------------------------------


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI ChainIDs: ChainID(0) = DiffID(0), ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out


def _v1_json(v1: str, parent: str | None, created: str) -> bytes:
    data = {"id": v1, "created": created, "os": "linux"}
    if parent:
        data["parent"] = parent
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def write_docker_archive(images: list[SaveImage], out: TarOut | DirOut, blobs: Blobs) -> None:
    """Write `images` (their layers through `blobs`) in the legacy docker-archive layout."""
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    v1_of: dict[str, str] = {}  # layer id -> v1 dir
    for image in images:
        diff_ids: list[str] = []
        paths: list[str] = []
        parent = None
        for layer in image.layers:
            def name_of(info: BlobInfo, ids: list[str] = diff_ids) -> str:
                return chain_ids([*ids, info.diff_id])[-1].split(":", 1)[1] + "/layer.tar"

            info, name = blobs.write(layer, parent, out, name_of)
            v1 = name.split("/", 1)[0]
            if layer.id not in v1_of:
                v1_of[layer.id] = v1
                parent_v1 = v1_of.get(parent.id) if parent else None
                out.file(f"{v1}/VERSION", b"1.0")
                out.file(f"{v1}/json", _v1_json(v1, parent_v1, layer.created_iso))
            diff_ids.append(info.diff_id)
            paths.append(name)
            parent = layer
        config = blobs.config(image)
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        out.file(config_name, config)
        manifest.append({
            "Config": config_name,
            "RepoTags": [str(t) for t in image.tags] or None,
            "Layers": paths,
        })
        for tag in image.tags:
            repositories.setdefault(tag.repository, {})[tag.tag] = v1_of[image.top.id]
    out.file("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    if repositories:
        out.file("repositories", json.dumps(repositories, sort_keys=True,
                                             separators=(",", ":")).encode())
