"""Hunk staging (`commit --patch`): commit some hunks of a container's text files.

The patches are layerctl.patch's (the one renderer); the new side is read from the
very entry the scan saw. A file committed in part goes into the layer as its old
content with the chosen hunks applied; the container keeps the whole file, so the
other hunks stay pending against the new base.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl.beneath import Changed
from layerctl.errors import Conflict
from layerctl.patch import FilePatch, Hunk, file_patch
from layerctl.store.diff import CHANGED, DELETED, Change
from layerctl.store.meta import DIR, FILE
from layerctl.words import path_text

from .changes import read_entry

if TYPE_CHECKING:
    from layerctl.store.repo import Store

    from .worktree import Pending


def reader(p: Pending, ch: Change) -> Callable[[int], bytes]:
    """read_new for render_patch/file_patch: a pending change's new side, bounded."""

    def read_new(limit: int) -> bytes:
        obs = p.scan.observed.get(ch.path)
        if obs is None:
            return b""
        try:
            return read_entry(p.view, obs.real, obs.st, limit) or b""
        except Changed:
            raise Conflict(f"{path_text(ch.path)} changed while being read; try again") from None

    return read_new


def stageable(ch: Change) -> bool:
    """Changes offered one by one: not directories (they come along as the parents
    of what is chosen), except a deleted one."""
    return ch.status == DELETED or (ch.new is not None and ch.new.kind != DIR)


def splittable(ch: Change) -> bool:
    """A regular file's content change, outside any hardlink group: hunks apply."""
    return (ch.status == CHANGED and ch.old is not None and ch.new is not None
            and ch.old.kind == FILE and ch.new.kind == FILE
            and not ch.old.link and not ch.new.link)


@dataclass
class Choice:
    """The user's answer for one change: the whole of it, or some hunks."""

    patch: FilePatch
    hunks: list[Hunk] | None  # None: the whole change


Chooser = Callable[[list[FilePatch]], list[Choice]]


def patches(store: Store, p: Pending) -> list[FilePatch]:
    """The patch of every change offered for staging, in walk order (one that is not
    `splittable` is taken whole or not at all; its hunks are only shown)."""
    return [file_patch(ch, store, reader(p, ch)) for ch in p.changes if stageable(ch)]
