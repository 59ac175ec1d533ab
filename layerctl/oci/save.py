"""`layerctl save`: images out as a docker-archive, an oci-archive or an OCI layout dir.

The layers' blobs come from their changesets (layertar's deterministic tar, via
layerblob), each written once per archive however many images share it. The
config is images.oci_config with the DiffIDs of the tars just written, so an
archive is always self-consistent; `stale` lists layers whose recorded DiffID
trailer did not match (a store written by an older layerctl).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from layerctl.errors import BadInput, InvalidName, LayerctlError
from layerctl.images import ImageName, chain, image_id, parse_name, resolve
from layerctl.oci.blobread import BlobReader
from layerctl.oci.compression import NONE
from layerctl.oci.layerblob import COMPRESSIONS, BlobInfo, write_layer_blob
from layerctl.oci.outputs import DirOut, Pending, TarOut, remove_tree
from layerctl.store.layers import Layer

if TYPE_CHECKING:
    from layerctl.store.repo import Store

FORMATS = ("docker-archive", "oci", "oci-dir")


@dataclass
class SaveImage:
    """An image to save: its tags (maybe none) and its layers, base first."""

    tags: list[ImageName]
    layers: list[Layer]

    @property
    def top(self) -> Layer:
        return self.layers[-1]


@dataclass
class Blobs:
    """Writes each layer's blob once per archive; remembers what it wrote."""

    store: Store
    compression: str
    reader: BlobReader
    progress: Callable[[Layer, BlobInfo], None] | None = None
    written: dict[str, tuple[BlobInfo, str]] = field(default_factory=dict)  # id -> (info, name)
    stale: list[str] = field(default_factory=list)

    def write(self, layer: Layer, parent: Layer | None, out: TarOut | DirOut,
              name_of: Callable[[BlobInfo], str]) -> tuple[BlobInfo, str]:
        found = self.written.get(layer.id)
        if found is not None:
            return found
        pending: Pending = out.pending()
        try:
            info = write_layer_blob(
                self.store, parent.root if parent else None, layer.root, pending,
                self.compression, self.reader,
            )
        except BaseException:
            pending.abort()
            raise
        name = name_of(info)
        pending.finish(name)
        if layer.diff_id and layer.diff_id != info.diff_id:
            self.stale.append(layer.id)
        self.written[layer.id] = (info, name)
        if self.progress is not None:
            self.progress(layer, info)
        return info, name


def collect(store: Store, refs: list[str]) -> list[SaveImage]:
    """The images named by `refs` (name[:tag] or layer references); a name gives its tag,
    a layer id none. Two names of one layer make one image with two tags."""
    if not refs:
        raise BadInput("save needs at least one image")
    images: dict[str, SaveImage] = {}
    for text in refs:
        layer_id = resolve(store, text)
        tag = None
        try:
            name = parse_name(text)
            if store.ref(name.ref) == layer_id:
                tag = name
        except InvalidName:
            pass
        image = images.get(layer_id)
        if image is None:
            image = images[layer_id] = SaveImage([], chain(store, layer_id))
        if tag is not None and tag not in image.tags:
            image.tags.append(tag)
    return list(images.values())


def _write(store: Store, images: list[SaveImage], out: TarOut | DirOut, fmt: str,
           blobs: Blobs) -> None:
    if fmt == "docker-archive":
        from layerctl.oci.archive import write_docker_archive

        write_docker_archive(images, out, blobs)
    else:
        from layerctl.oci.layout import write_oci_layout

        write_oci_layout(images, out, blobs)


def save(
    store: Store,
    refs: list[str],
    output: str,
    fmt: str = "docker-archive",
    compression: str | None = None,
    progress: Callable[[Layer, BlobInfo], None] | None = None,
) -> tuple[list[SaveImage], Blobs]:
    """Write the images `refs` to `output` (a file, `-` for stdout, or for oci-dir a
    directory); returns them and the Blobs record. A file or directory appears only
    complete (written beside it, then renamed)."""
    if not output:
        raise BadInput("the output path is empty: name a file, a directory or -")
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    compression = compression or NONE
    if compression not in COMPRESSIONS:
        raise BadInput(f"unknown compression {compression!r}: use gzip, zstd or none")
    images = collect(store, refs)
    with BlobReader.for_store(store) as reader:
        blobs = Blobs(store, compression, reader, progress)
        if fmt == "oci-dir":
            _save_dir(store, images, output, blobs)
        elif output == "-":
            if sys.stdout.isatty():
                raise BadInput("refusing to write an archive to a terminal: use -o FILE")
            out = TarOut(sys.stdout.buffer, spool_dir=store.path())
            _write(store, images, out, fmt, blobs)
            out.close()
        else:
            _save_file(store, images, output, fmt, blobs)
    return images, blobs


def _save_file(store: Store, images: list[SaveImage], output: str, fmt: str,
               blobs: Blobs) -> None:
    directory = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        raise BadInput(f"{output} is a directory (use --format oci-dir to write a layout there)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", dir=directory)
    except OSError as e:
        raise BadInput(f"cannot write {output}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w+b") as f:
            out = TarOut(f, spool_dir=store.path())
            _write(store, images, out, fmt, blobs)
            out.close()
            os.fchmod(f.fileno(), 0o644 & ~_umask())
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _save_dir(store: Store, images: list[SaveImage], output: str, blobs: Blobs) -> None:
    if output == "-":
        raise BadInput("an oci-dir is a directory: give one with -o DIR")
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        raise BadInput(f"{output} exists and is not an empty directory")
    parent = os.path.dirname(os.path.abspath(output))
    try:
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", dir=parent)
    except OSError as e:
        raise BadInput(f"cannot write {output}: {e.strerror or e}") from None
    try:
        os.chmod(tmp, 0o755 & ~_umask())
        out = DirOut(tmp)
        _write(store, images, out, "oci-dir", blobs)
        if os.path.isdir(output):
            os.rmdir(output)
        os.rename(tmp, output)
    except BaseException:
        remove_tree(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def saved_image_id(image: SaveImage, blobs: Blobs) -> str:
    """The image ID in the archive (differs from images.image_id only for stale DiffIDs)."""
    if not any(layer.id in blobs.stale for layer in image.layers):
        return image_id(image.layers)
    from layerctl.oci.image import config_blob, sha256_digest

    diff_ids = [blobs.written[layer.id][0].diff_id for layer in image.layers]
    return sha256_digest(config_blob(image.layers, diff_ids))


__all__ = ["FORMATS", "Blobs", "LayerctlError", "SaveImage", "collect", "save", "saved_image_id"]
