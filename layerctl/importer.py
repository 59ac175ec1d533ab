"""`layerctl import`: a root filesystem (directory or tar) becomes one base layer."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import BadInput
from layerctl.images import ImageName, default_config, image_layer, tag_new_layer
from layerctl.oci.layertar import LayerTarWriter, write_layer_tar
from layerctl.store.fstree import DirRef
from layerctl.store.layers import write_layer
from layerctl.store.snapshot import DirImporter, Progress

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def commit_root(
    store: Store,
    root: DirRef,
    parent: DirRef | None,
    parent_id: str | None,
    config: dict,
    author: str,
    message: str,
    created_by: str,
    size: int,
    diff_id: str | None = None,
) -> str:
    """Write the commit for a filesystem whose trees are already stored; returns its id.

    `diff_id`, when the caller already hashed the changeset tar, saves a pass.
    """
    diff_id = diff_id or write_layer_tar(store, parent, root)
    trailers = {"DiffID": diff_id, "Size": str(size), "Created-By": created_by}
    return write_layer(store, root, config, parent_id, author, message, trailers)


def import_directory(
    store: Store,
    source: str,
    name: ImageName,
    author: str,
    message: str = "",
    progress: Progress | None = None,
) -> str:
    """Import the directory `source` as a new base layer tagged `name`; returns its id."""
    if not os.path.isdir(source):
        raise BadInput(f"{source}: not a directory")
    before = image_layer(store, name)
    with store.pack_writer() as writer:
        tar = LayerTarWriter()
        importer = DirImporter(writer, progress, tar=tar)
        root = importer.import_dir(source)
        writer.finish()
    store.landed()
    faults.point("import.write-layer")
    layer_id = commit_root(
        store,
        root,
        None,
        None,
        default_config(),
        author,
        message,
        f"layerctl import {os.path.basename(os.path.abspath(source))}",
        importer.total,
        diff_id=tar.close(),
    )
    faults.point("import.move-tag")
    tag_new_layer(store, name, layer_id, "imported", expected=before)
    return layer_id
