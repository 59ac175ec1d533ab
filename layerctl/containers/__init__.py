"""Containers: state, drivers (overlay, vfs, tracked), change scanning, commit, watch.

The public API is re-exported here; nothing in this package imports click or Textual.
Each name is imported from its module when first used (PEP 562), so `status` or
`ps` do not load the commit and restore code: every command pays start-up time for
what it imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.lazy import attribute_getter

if TYPE_CHECKING:
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

_HOME = {
    "NothingToCommit": "committing", "commit": "committing",
    "reset": "discard", "restore": "discard",
    "create": "lifecycle", "inspect_container": "lifecycle", "is_mounted": "lifecycle",
    "mount": "lifecycle", "remove": "lifecycle", "root_dir": "lifecycle",
    "umount": "lifecycle",
    "Container": "state", "list_containers": "state", "resolve": "state",
    "pending": "worktree", "status": "worktree",
}


__getattr__ = attribute_getter(__name__, _HOME, globals())


__all__ = [
    "Container", "NothingToCommit", "commit", "create", "inspect_container", "is_mounted",
    "list_containers", "mount", "pending", "remove", "reset", "resolve", "restore", "root_dir",
    "status", "umount",
]
