"""Containers: state, drivers (overlay, vfs), change scanning, commit, watch.

The public API is re-exported here; nothing in this package imports click or Textual.
"""

from layerctl.containers.api import (
    NothingToCommit,
    commit,
    create,
    inspect_container,
    is_mounted,
    mount,
    pending,
    remove,
    reset,
    restore,
    root_dir,
    status,
    umount,
)
from layerctl.containers.state import Container, list_containers, resolve

__all__ = [
    "Container", "NothingToCommit", "commit", "create", "inspect_container", "is_mounted",
    "list_containers", "mount", "pending", "remove", "reset", "resolve", "restore", "root_dir",
    "status", "umount",
]
