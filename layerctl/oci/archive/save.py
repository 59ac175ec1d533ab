"""`layerctl save`: images out as a docker-archive, an oci-archive or an OCI layout dir.

The layers' blobs come from their changesets (changeset.write, via archive.blobs),
each written once per archive however many images share it; a layer loaded or
pulled with another tar gives that tar back byte for byte from its tar-split record
(changeset.tarsplit), or, if the record does not give the layer's Source-DiffID, its
changeset (`broken` says why). The config is the image's own (origin.image_config)
or images.oci_config, always with the DiffIDs of the tars just written, so an
archive is self-consistent; `stale` lists layers whose recorded DiffID did not match
(a store written by an older layerctl).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from layerctl.compress.detect import NONE
from layerctl.errors import BadInput, InvalidName, LayerctlError
from layerctl.images import chain, parse_name, resolve
from layerctl.oci.archive.blobs import COMPRESSIONS, BlobInfo, Blobs, SaveImage
from layerctl.oci.archive.out import DirOut, TarOut, remove_tree, umask, write_output
from layerctl.store.blobread import BlobReader
from layerctl.store.layers import Layer

FORMATS = ("docker-archive", "oci", "oci-dir")


def collect(store: object, refs: list[str]) -> list[SaveImage]:
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


def _write(store: object, images: list[SaveImage], out: TarOut | DirOut, fmt: str,
           blobs: Blobs) -> None:
    if fmt == "docker-archive":
        from layerctl.oci.archive.docker import write_docker_archive

        write_docker_archive(images, out, blobs)
    else:
        from layerctl.oci.archive.layout import write_oci_layout

        write_oci_layout(images, out, blobs)


def save(
    store: object,
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
        else:
            if output != "-" and os.path.isdir(output):
                raise BadInput(f"{output} is a directory (use --format oci-dir to write a "
                               "layout there)")

            def write(f: BinaryIO) -> None:
                out = TarOut(f, spool_dir=store.path())
                _write(store, images, out, fmt, blobs)
                out.close()

            write_output(output, write, "an archive")
    return images, blobs


def _save_dir(store: object, images: list[SaveImage], output: str, blobs: Blobs) -> None:
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
        os.chmod(tmp, 0o755 & ~umask())
        out = DirOut(tmp)
        _write(store, images, out, "oci-dir", blobs)
        if os.path.isdir(output):
            os.rmdir(output)
        os.rename(tmp, output)
    except BaseException:
        remove_tree(tmp)
        raise


def saved_image_id(image: SaveImage, blobs: Blobs) -> str:
    """The image ID in the archive: the sha256 of the config written."""
    from layerctl.oci.model import sha256_digest

    return sha256_digest(blobs.config(image))


__all__ = ["FORMATS", "Blobs", "LayerctlError", "SaveImage", "collect", "save", "saved_image_id"]
