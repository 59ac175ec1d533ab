"""The interpreter's heap during a bulk pass."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """No cyclic garbage collection while a pass builds objects that all live until it
    ends (the trees and records of a 100k-file layer): the collector rescans them as
    they pile up, 1.5-2 s of a 7 s load. Such a pass makes no reference cycles worth
    collecting; reference counting frees everything else as before."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
