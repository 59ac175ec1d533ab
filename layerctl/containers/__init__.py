"""Containers: state, drivers (overlay, vfs, tracked), change scanning, commit, watch.

The public API is re-exported here; nothing in this package imports click or Textual.
"""

from layerctl.containers.committing import NothingToCommit, commit
from layerctl.containers.discard import reset, restore
from layerctl.containers.lifecycle import (
    create,
    inspect_container,
    is_mounted,
    mount,
    remove,
    root_dir,
    umount,
)
from layerctl.containers.state import Container, list_containers, resolve
from layerctl.containers.worktree import pending, status

__all__ = [
    "Container", "NothingToCommit", "commit", "create", "inspect_container", "is_mounted",
    "list_containers", "mount", "pending", "remove", "reset", "resolve", "restore", "root_dir",
    "status", "umount",
]
