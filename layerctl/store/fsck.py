"""Verify the store: every reachable object hashes to its id and every layer follows
the rules fetch enforces (layerctl.store.validate); every image ref is an image name
pointing at a layer."""

from __future__ import annotations

from layerctl.images import REF_PREFIX, ref_problem
from layerctl.store.validate import Validator


def fsck(store: object) -> tuple[list[str], int]:
    """Check every ref (images, containers, pulls) and the layers below it.

    Returns (problems, number of objects checked).
    """
    checker = Validator(store, verify_hashes=True)
    for ref, sha in sorted(store.refs_under("refs").items()):
        if ref.startswith(REF_PREFIX):
            problem = ref_problem(ref)
            if problem:
                checker.problems.append(f"{ref}: {problem}")
        checker.check_layer(sha, ref)
    return checker.problems, checker.objects
