"""Errors a user can cause. The CLI prints them as one line, never a traceback."""

import errno


class LayerctlError(Exception):
    """A user-facing error: the message names the thing that is wrong."""

    exit_code = 1


class NotFound(LayerctlError):
    """An image, layer, container or path that does not exist."""


class Ambiguous(LayerctlError):
    """A short id or name that matches more than one thing."""


class InvalidName(LayerctlError):
    """A name that breaks the reference grammar."""


class Locked(LayerctlError):
    """Another layerctl process holds the lock (or won a compare-and-swap)."""


class Corrupt(LayerctlError):
    """A store object that is missing or does not match its id."""


class BadInput(LayerctlError):
    """Input data (a tar, a directory, an argument) that cannot be taken."""


class Conflict(LayerctlError):
    """The operation would lose data or clash with existing state."""


class TagNotMoved(LayerctlError):
    """A layer was written, but the tag asked for could not be moved to it."""


class NoSpace(LayerctlError):
    """The store's filesystem is full (ENOSPC) or the quota is used up (EDQUOT)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no space left on the store's filesystem ({path})")


def is_no_space(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
