"""The container operations under one name, for callers that use many of them
(`from layerctl.containers import api`: the TUI screens, history rewriting, tests,
scripts). Nothing is defined here: each lives in the module named for what it
holds, and code inside containers/ imports it from there.

    lifecycle.py    create, mount, umount, rm, inspect
    worktree.py     pending changes: pending, status, select
    committing.py   commit
    discard.py      restore, reset
    drivers/        what differs between overlay, vfs and a tracked engine container
"""

from __future__ import annotations

from .committing import CommitResult, NothingToCommit, apply_changes_to, commit
from .discard import reset, restore
from .lifecycle import (
    create,
    inspect_container,
    is_mounted,
    mount,
    refuse_if_running,
    remove,
    root_dir,
    umount,
)
from .state import Container, resolve
from .worktree import (
    RUNTIME_MOUNT_POINTS,
    Pending,
    normalize_paths,
    pending,
    select,
    status,
    view_of,
)
from .writeback import writing_back

__all__ = [
    "RUNTIME_MOUNT_POINTS", "CommitResult", "Container", "NothingToCommit", "Pending",
    "apply_changes_to", "commit", "create", "inspect_container", "is_mounted",
    "mount", "normalize_paths", "pending", "refuse_if_running", "remove", "reset",
    "resolve", "restore", "root_dir", "select", "status", "umount", "view_of",
    "writing_back",
]
