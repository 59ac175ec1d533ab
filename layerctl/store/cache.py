"""Derived facts kept under the store's cache/ directory.

Each file is a pure function of immutable objects named by its key (a layer id, a
tree id), so it never needs invalidating: a missing, unreadable or malformed file is
recomputed from the objects. A value that also depends on how layerctl computes it (an
analysis, not a plain decoding) adds code_stamp() of the modules that compute it to
its key, so a changed layerctl recomputes rather than reading an older one's answer.
Values are marshalled (plain tuples, bytes, ints, str: fast to load and, unlike
pickle, no code runs on load). Written with atomic.write_file, not durable: losing one
to a crash costs only the recomputation.
"""

from __future__ import annotations

import marshal
import os
import re
import zlib
from typing import TYPE_CHECKING, Any

from layerctl.atomic import write_file

if TYPE_CHECKING:
    from layerctl.store.types import StoreLike

_VERSION = 1
_KEY = re.compile(r"[0-9a-f]{8,128}(-[0-9a-f]{8,128})*")


def _path(store: StoreLike, kind: str, key: str) -> str | None:
    if not _KEY.fullmatch(key):
        return None
    return store.path("cache", kind, key)


def load(store: StoreLike, kind: str, key: str) -> object | None:
    """The value kept for `key`, or None when there is none or it cannot be read."""
    path = _path(store, kind, key)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            version, value = marshal.loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return value if version == _VERSION else None


def save(store: StoreLike, kind: str, key: str, value: Any) -> None:
    """Keep `value` for `key`; best effort (a read-only store just recomputes)."""
    path = _path(store, kind, key)
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file(path, marshal.dumps((_VERSION, value)), durable=False)
    except (OSError, ValueError):
        pass


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # layerctl/


def code_stamp(*modules: str) -> str:
    """8 hex digits that change when the source of any of `modules` (dotted names under
    layerctl) does: their files' sizes and modification times, so an edit or an upgrade
    shows. A stat each; nothing is imported."""
    facts = []
    for name in modules:
        path = os.path.join(_PACKAGE, *name.split(".")[1:]) + ".py"
        try:
            st = os.stat(path)
        except OSError:
            facts.append(f"{name}:?")
            continue
        facts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return f"{zlib.crc32(' '.join(facts).encode()):08x}"


def drop_others(store: StoreLike, kind: str, prefix: str, keep: str) -> None:
    """Remove the values of `kind` whose key starts with `prefix` but is not `keep`:
    what an older layerctl kept for the same object under another code stamp, which
    nothing reads any more. Best effort."""
    directory = store.path("cache", kind)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name != keep and _KEY.fullmatch(name):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
