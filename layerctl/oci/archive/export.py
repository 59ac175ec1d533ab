"""`layerctl export`: a container's or a layer's whole filesystem as one tar (docker export).

A layer's export is its changeset against the empty filesystem. A container's
is that of its current merged view: the base layer with the pending changes
applied, built like a commit but in a staged pack that is discarded
afterwards, so exporting leaves the store exactly as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from layerctl.changeset.write import write_changeset
from layerctl.errors import BadInput
from layerctl.oci.archive.out import write_output
from layerctl.store.blobread import BlobReader
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef
from layerctl.store.layers import read_layer
from layerctl.store.staging import Staging

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def _container_tree(store: Store, staging: Staging, c: object) -> DirRef:
    """The container's merged filesystem as a tree in `staging` (what a commit of every
    pending change would hold)."""
    from layerctl.containers.committing import apply_changes_to
    from layerctl.containers.worktree import pending

    p = pending(store, c)
    editor = TreeEditor(staging, read_layer(store, p.base_id).root)
    with staging.pack_writer() as writer:
        apply_changes_to(editor, writer, p, p.changes, "exported")
        if p.scan.root is not None:
            editor.set_dir(b"", p.scan.root)
        root = editor.write(writer)
        writer.finish()
    staging.add(writer)
    return root


def export_to(store: Store, ref: str, out: BinaryIO) -> str:
    """Write the filesystem of container or layer `ref` (a container name wins) to `out`;
    returns what was exported, for messages."""
    from layerctl.containers.state import find, locked
    from layerctl.images import resolve

    c = find(store, ref)
    with Staging(store) as staging:
        if c is not None:
            with locked(store, c):
                root = _container_tree(store, staging, c)
            what = f"container {c.name}"
        else:
            layer_id = resolve(store, ref)
            root = read_layer(store, layer_id).root
            what = f"layer {layer_id[:12]}"
        with BlobReader.for_store(staging, staging.bases) as reader:
            write_changeset(staging, None, root, out, reader)
    return what


def export(store: Store, ref: str, output: str) -> str:
    """export_to() a file (written beside it, then renamed) or `-` (stdout)."""
    if not output:
        raise BadInput("the output path is empty: name a file or -")
    return write_output(output, lambda f: export_to(store, ref, f), "a tar")
