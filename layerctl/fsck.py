"""Verify the store: every reachable object hashes to its id and every layer follows
the rules fetch enforces (layerctl.store.validate); every image ref is an image name
pointing at a layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.errors import LayerctlError
from layerctl.images import REF_PREFIX, ref_problem
from layerctl.store.validate import Validator

if TYPE_CHECKING:
    from layerctl.store.repo import Store

def fsck(store: object) -> tuple[list[str], int]:
    """Check every ref (images, containers, pulls) and the layers below it, and that
    each kept original layer tar (tar-split record) still gives that layer.

    Returns (problems, number of objects checked).
    """
    checker = Validator(store, verify_hashes=True)
    for ref, sha in sorted(store.refs_under("refs").items()):
        if ref.startswith(REF_PREFIX):
            problem = ref_problem(ref)
            if problem:
                checker.problems.append(f"{ref}: {problem}")
        checker.check_layer(sha, ref)
    if not checker.problems:  # records are read only from a store whose objects are sound
        from layerctl.tarsplit_check import record_problems

        checker.problems.extend(record_problems(store))
    return checker.problems, checker.objects


def stale_diff_ids(store: Store) -> list[str]:
    """Lines for the layers whose DiffID trailer is not the sha256 of their changeset
    tar as layerctl writes it now (recorded by an older writer, or tampered with).
    Not damage: `save` and `push` put the DiffID of the tar they send in the config.
    Reads every file of every layer's changeset once."""
    from layerctl.changeset.write import write_changeset
    from layerctl.images import chain

    seen: set[str] = set()
    out = []
    for ref, sha in sorted(store.refs_under(REF_PREFIX).items()):
        try:
            layers = chain(store, sha)
        except LayerctlError:
            continue  # fsck names it
        for parent, layer in zip([None, *layers], layers, strict=False):
            if layer.id in seen or not layer.diff_id:
                continue
            seen.add(layer.id)
            now, _size = write_changeset(store, parent.root if parent else None, layer.root)
            if now != layer.diff_id:
                out.append(f"layer {layer.id[:12]} ({ref[len(REF_PREFIX):]}): recorded DiffID "
                           f"{layer.diff_id[:19]} differs from its changeset's {now[:19]}")
    return out
