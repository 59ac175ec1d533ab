"""`fsck` of tar-split records: every kept original tar must still be the layer.

A record passes when the tar it gives hashes to the layer's Source-DiffID and,
applied onto the parent layer's tree, gives exactly the layer's tree. The
second check is what makes a record from outside (a git remote) safe: a record
and a Source-DiffID forged together hash right but would send other files.
"""

from __future__ import annotations

import tempfile

from layerctl.changeset.apply import apply_layer_tar
from layerctl.changeset.tar import LayerTarWriter
from layerctl.changeset.tarsplit import BrokenRecord, emit_checked, layer_record
from layerctl.errors import LayerctlError
from layerctl.images import REF_PREFIX, chain, name_from_ref
from layerctl.store.blobread import BlobReader
from layerctl.store.edit import TreeEditor
from layerctl.store.layers import Layer

_SPOOL_IN_MEMORY = 64 << 20


def record_problems(store: object, refs: dict[str, str] | None = None,
                    trusted: set[str] = frozenset()) -> list[str]:
    """One line per layer reached from `refs` (default: every ref), down to a `trusted`
    one, whose tar-split record is damaged. `fetch` runs it on what a remote brought."""
    seen: set[str] = set(trusted)
    out = []
    for ref, sha in sorted((store.refs_under("refs") if refs is None else refs).items()):
        try:
            layers = chain(store, sha)
        except LayerctlError:
            continue  # not a layer (fsck's other checks name it)
        for parent, layer in zip([None, *layers], layers, strict=False):
            if layer.id in seen:
                continue  # (a trusted layer's parents are trusted too, and seen below it)
            seen.add(layer.id)
            why = record_problem(store, parent, layer)
            if why:
                shown = _shown(ref)
                out.append(f"layer {layer.id[:12]} ({shown}): its kept original tar "
                           f"(source/tar-split) {why}; save and push send its changeset "
                           "instead")
    return out


def _shown(ref: str) -> str:
    if ref.startswith(REF_PREFIX):
        try:
            return str(name_from_ref(ref))
        except LayerctlError:
            pass
    return ref


def record_problem(store: object, parent: Layer | None, layer: Layer) -> str:
    """Why `layer`'s record is not its tar ("" if it is, or if it has none)."""
    record = layer_record(store, layer)
    if record is None:
        return ""
    with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY, dir=store.path()) as spool:
        try:
            with BlobReader.for_store(store) as reader:
                emit_checked(record[0], record[1], reader, LayerTarWriter(spool))
        except BrokenRecord as e:
            return f"is damaged: {e}"
        spool.seek(0)
        writer = store.pack_writer()  # scratch: aborted, nothing lands
        try:
            editor = TreeEditor(store, parent.root if parent else None)
            try:
                apply_layer_tar(editor, writer, spool)
            except LayerctlError as e:
                return f"is not a valid layer tar ({e})"
            root = editor.write(writer)
        finally:
            writer.abort()
    if root != layer.root:
        return "gives other files than the layer holds"
    return ""
