"""Named fault points (bup's pattern): tests reach a point by name and act there.

`point("commit.before-ref")` costs one dict look-up when nothing is armed. Two
ways to arm a point:

- in another process, `LAYERCTL_CRASH_AT=NAME` kills the process with SIGKILL
  when it reaches NAME (a crash *at* the point, not after a guessed sleep);
  `LAYERCTL_CRASH_AT=NAME#N` kills at the N-th time NAME is reached;
- in this process, `armed(NAME, fn)` calls `fn()` there, e.g. to swap a
  container file for a symlink between a scan and a read.

Point names are `area.what-is-about-to-happen`, listed where they are reached;
`grep -rn "faults.point(" layerctl` finds them all, and docs/design-notes.md
("Crash safety") tables them with what is done and not yet done at each.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

_hooks: dict[str, Callable[[], None]] = {}
_crash_name, _, _crash_nth = os.environ.get("LAYERCTL_CRASH_AT", "").partition("#")
_crash_left = int(_crash_nth) if _crash_nth.isdigit() else 1


def point(name: str) -> None:
    """Reached at a named point of a code path; does nothing unless armed."""
    global _crash_left
    if name == _crash_name:
        _crash_left -= 1
        if _crash_left <= 0:
            import signal  # here: every command imports this module

            os.kill(os.getpid(), signal.SIGKILL)
    hook = _hooks.get(name)
    if hook is not None:
        hook()


@contextlib.contextmanager
def armed(name: str, hook: Callable[[], None]) -> Iterator[None]:
    """Call `hook` each time `name` is reached inside the `with` block."""
    previous = _hooks.get(name)
    _hooks[name] = hook
    try:
        yield
    finally:
        if previous is None:
            _hooks.pop(name, None)
        else:
            _hooks[name] = previous
