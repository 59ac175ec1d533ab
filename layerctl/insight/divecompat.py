"""dive's own efficiency numbers (dive 0.13.1, with its defects), from the same layer
changesets, so users migrating from dive can compare. See docs/design-notes.md.

Per layer dive visits the leaves of the layer tar's tree (files, symlinks, empty
directories, whiteouts; opaque markers are dropped). A leaf's size is its tar header
size; a whiteout of a directory weighs the directory's subtree in the layers below.
Per path: cum += size, min = min(min, size), n += 1. efficiency = sum(min) / sum(cum);
wasted = sum(cum) over paths with n >= 2 (open dive PR #685: sum(cum - min)); user size =
the shipped bytes of every layer but the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl.changeset.tar import without_implied_whiteouts
from layerctl.errors import BadInput
from layerctl.insight.history import Step
from layerctl.insight.waste import shipped_size, subtree
from layerctl.store.diff import DELETED, Change
from layerctl.store.meta import DIR

if TYPE_CHECKING:
    from layerctl.store.repo import Store

VARIANTS = ("0.13", "685")


@dataclass
class DiveFigures:
    variant: str
    size: int  # sum of the layer sizes
    user_size: int  # all layers but the first
    sum_min: int
    sum_cum: int
    wasted_bytes: int
    rows: list[tuple[int, int, bytes]]  # (count, cum, path), largest cum first

    @property
    def efficiency(self) -> float:
        return 1.0 if self.sum_cum == 0 else self.sum_min / self.sum_cum

    @property
    def user_ratio(self) -> float:
        if self.user_size == 0:  # Go's float division: 0/0 is NaN, x/0 is +Inf
            return float("nan") if self.wasted_bytes == 0 else float("inf")
        return self.wasted_bytes / self.user_size


def _non_leaves(changes: list[Change]) -> set[bytes]:
    out: set[bytes] = set()
    for ch in changes:
        p = ch.path
        while b"/" in p:
            p = p.rpartition(b"/")[0]
            if p in out:
                break
            out.add(p)
    return out


def dive_figures(store: Store, steps: list[Step], variant: str = "0.13") -> DiveFigures:
    if variant not in VARIANTS:
        raise BadInput(f"--dive-compat: want one of {', '.join(VARIANTS)}, not {variant!r}")
    cum: dict[bytes, int] = {}
    low: dict[bytes, int] = {}
    count: dict[bytes, int] = {}
    sizes = []
    for step in steps:
        # What the layer tar holds: an opaque directory's marker stands for its deletions.
        entries = list(without_implied_whiteouts(step.changes))
        inner = _non_leaves(entries)
        layer_size = 0
        for ch in entries:
            if ch.status == DELETED:
                size = 0
                if ch.old is not None and ch.old.kind == DIR:
                    size = sum(shipped_size(m) for _p, m in
                               subtree(store, step.parent_root, ch.path))
            else:
                size = shipped_size(ch.new)
                layer_size += size
                if ch.path in inner:
                    continue
            p = ch.path
            cum[p] = cum.get(p, 0) + size
            low[p] = min(low.get(p, size), size)
            count[p] = count.get(p, 0) + 1
        sizes.append(layer_size)
    inefficient = [p for p, n in count.items() if n >= 2]
    if variant == "685":
        wasted = sum(cum[p] - low[p] for p in inefficient)
    else:
        wasted = sum(cum[p] for p in inefficient)
    rows = sorted(((count[p], cum[p], p) for p in inefficient), key=lambda r: (-r[1], r[2]))
    return DiveFigures(variant, sum(sizes), sum(sizes[1:]), sum(low.values()),
                       sum(cum.values()), wasted, rows)
