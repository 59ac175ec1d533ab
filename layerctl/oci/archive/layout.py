"""OCI image layout (image-spec layout.md), as a directory or a tar (oci-archive).

Read: `oci-layout`, `index.json`, and every manifest, config and layer under
`blobs/sha256/`, each checked against its descriptor's digest and size. Nested
indexes (multi-platform images) resolve to the manifest for this machine's
platform. Tags come from the `org.opencontainers.image.ref.name` annotation
when it holds a full name (`name:tag`, as podman and layerctl write it), or
from containerd's `io.containerd.image.name`; a bare tag alone (`latest`)
names no repository, and such an image loads untagged, as with `docker load`.

Write: one manifest per image, one index.json entry per tag (ref.name = the
full `name:tag`, with the image's platform), blobs named by digest.
"""

from __future__ import annotations

from layerctl.errors import BadInput
from layerctl.images import ImageName, host_arch
from layerctl.oci.archive.blobs import BlobInfo, Blobs, SaveImage
from layerctl.oci.archive.fs import ArchiveFS
from layerctl.oci.archive.out import DirOut, TarOut
from layerctl.oci.model import (
    CONTAINERD_NAME,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_IMAGES,
    MAX_JSON_BYTES,
    OCI_CONFIG,
    OCI_LAYOUT_VERSION,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    SourceImage,
    index_blob,
    layer_media_type,
    load_json,
    manifest_blob,
    parse_descriptor,
    sha256_digest,
    source_image,
    tag_of,
)
from layerctl.oci.platform import choose, parse_platform

_MAX_DEPTH = 4


def is_oci_layout(fs: ArchiveFS) -> bool:
    return fs.exists("index.json")


def read_blob(fs: ArchiveFS, desc: Descriptor, limit: int = MAX_JSON_BYTES) -> bytes:
    """A small blob (manifest, index, config), checked against its descriptor."""
    path = desc.blob_path
    size = fs.size(path)
    if size != desc.size:
        raise fs.fail(path, f"size mismatch: the descriptor says {desc.size} bytes, "
                            f"the blob has {size}")
    data = fs.read(path, limit)
    if sha256_digest(data) != desc.digest:
        raise fs.fail(path, f"digest mismatch: expected {desc.digest}, "
                            f"the blob is {sha256_digest(data)}")
    return data


def _tags(desc: Descriptor, where: str) -> list[ImageName]:
    name = desc.annotations.get(CONTAINERD_NAME)
    if name:
        return [tag_of(name, where)]
    ref = desc.annotations.get(REF_NAME, "")
    if ":" in ref or "/" in ref:
        return [tag_of(ref, where)]
    return []  # a bare tag names no repository


class _Reader:
    def __init__(self, fs: ArchiveFS) -> None:
        self.fs = fs
        self.images: dict[str, SourceImage] = {}  # manifest digest -> image

    def entry(self, desc: Descriptor, tags: list[ImageName], where: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise BadInput(f"{self.fs.label}: {where}: indexes nested more than {_MAX_DEPTH} deep")
        data = read_blob(self.fs, desc)
        doc = load_json(data, f"{self.fs.label}: {desc.blob_path}")
        if not isinstance(doc, dict):
            raise BadInput(f"{self.fs.label}: {desc.blob_path}: expected a JSON object")
        media_type = desc.media_type or doc.get("mediaType", "")
        if media_type in INDEX_TYPES or (not media_type and "manifests" in doc):
            self.index(doc, tags, desc.blob_path, depth + 1)
            return
        if media_type and media_type not in MANIFEST_TYPES:
            raise BadInput(f"{self.fs.label}: {where}: not an image manifest "
                           f"(mediaType {media_type[:80]!r})")
        found = self.images.get(desc.digest)
        if found is not None:
            found.tags.extend(t for t in tags if t not in found.tags)
            return
        image = source_image(doc, b"", f"{self.fs.label}: {desc.blob_path}", tags)
        config_desc = parse_descriptor(doc["config"], f"{desc.blob_path}: config")
        image.config_raw = read_blob(self.fs, config_desc)
        image.label = desc.blob_path
        for layer in image.layers:
            size = self.fs.size(layer.source)
            if size != layer.size:
                raise self.fs.fail(layer.source, f"size mismatch: the manifest says "
                                                 f"{layer.size} bytes, the blob has {size}")
        self.images[desc.digest] = image
        if len(self.images) > MAX_IMAGES:
            raise BadInput(f"{self.fs.label}: more than {MAX_IMAGES} images")

    def index(self, doc: dict, tags: list[ImageName], where: str, depth: int) -> None:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise BadInput(f"{self.fs.label}: {where}: manifests must be a list")
        if len(manifests) > MAX_IMAGES:
            raise BadInput(f"{self.fs.label}: {where}: more than {MAX_IMAGES} manifests")
        descs = [parse_descriptor(m, f"{self.fs.label}: {where}: manifests[{i}]")
                 for i, m in enumerate(manifests)]
        if depth > 0:  # a platform index: the manifest for this machine
            images = [d for d in descs if d.media_type not in INDEX_TYPES]
            chosen = choose([d.platform for d in images], parse_platform(None),
                            f"{self.fs.label}: {where}")
            self.entry(images[chosen], tags, where, depth)
            return
        for i, d in enumerate(descs):
            label = f"{where}: manifests[{i}]"
            self.entry(d, tags + _tags(d, f"{self.fs.label}: {label}"), label, depth)


def read_oci_layout(fs: ArchiveFS) -> list[SourceImage]:
    """The images of an OCI layout, every document read and checked, every blob present."""
    if not fs.exists("oci-layout"):
        raise BadInput(f"{fs.label}: oci-layout: missing (not an OCI image layout)")
    marker = load_json(fs.read("oci-layout", 4096), f"{fs.label}: oci-layout")
    version = marker.get("imageLayoutVersion") if isinstance(marker, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise BadInput(f"{fs.label}: oci-layout: unsupported imageLayoutVersion {version!r}")
    doc = load_json(fs.read("index.json", MAX_JSON_BYTES), f"{fs.label}: index.json")
    if not isinstance(doc, dict):
        raise BadInput(f"{fs.label}: index.json: expected a JSON object")
    reader = _Reader(fs)
    reader.index(doc, [], "index.json", 0)
    return list(reader.images.values())


# -- writing -------------------------------------------------------------------------


def write_oci_layout(images: list[SaveImage], out: TarOut | DirOut, blobs: Blobs) -> None:
    """Write `images` as an OCI image layout (blobs first, index.json last)."""
    out.file("oci-layout", b'{"imageLayoutVersion":"' + OCI_LAYOUT_VERSION.encode() + b'"}')
    out.dir("blobs")
    out.dir("blobs/sha256")
    media_type = layer_media_type(blobs.compression)
    entries: list[Descriptor] = []
    for image in images:
        layers: list[Descriptor] = []
        diff_ids: list[str] = []
        parent = None
        for layer in image.layers:
            info, _name = blobs.write(layer, parent, out, _blob_name)
            layers.append(Descriptor(media_type, info.digest, info.size))
            diff_ids.append(info.diff_id)
            parent = layer
        config = blobs.config(image)
        config_desc = Descriptor(OCI_CONFIG, sha256_digest(config), len(config))
        out.file(config_desc.blob_path, config)
        manifest = manifest_blob(config_desc, layers)
        platform = {
            "architecture": image.top.config.get("architecture") or host_arch(),
            "os": image.top.config.get("os") or "linux",
        }
        digest = sha256_digest(manifest)
        desc = Descriptor(OCI_MANIFEST, digest, len(manifest), platform=platform)
        out.file(desc.blob_path, manifest)
        if not image.tags:
            entries.append(desc)
        for tag in image.tags:
            entries.append(Descriptor(OCI_MANIFEST, digest, len(manifest),
                                      annotations={REF_NAME: str(tag)}, platform=platform))
    out.file("index.json", index_blob(entries))


def _blob_name(info: BlobInfo) -> str:
    return "blobs/sha256/" + info.digest.split(":", 1)[1]
