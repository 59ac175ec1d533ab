"""Changes rendered as text: `docker diff` lines, git-style stats and patches."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

from layerctl.store.diff import ADDED, DELETED, Change
from layerctl.store.meta import FILE, SYMLINK
from layerctl.words import path_text

BINARY_SNIFF = 8000


def status_line(change: Change) -> str:
    """`C /etc/hostname` as docker diff prints it."""
    return f"{change.status} {path_text(change.path)}"


def detail_line(change: Change) -> str:
    """`C /usr/bin/passwd  mode 0755→4755, uid 0→1000`."""
    details = change.details()
    return status_line(change) + (f"  ({', '.join(details)})" if details else "")


def is_binary(data: bytes) -> bool:
    if b"\0" in data[:BINARY_SNIFF]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def render_patch(change: Change, read_blob: Callable[[bytes], bytes]) -> list[str]:
    """A git-style patch for one change: header, metadata words, unified diff."""
    name = change.path.decode("utf-8", "backslashreplace")
    lines = [f"diff --layerctl a/{name} b/{name}"]
    old, new = change.old, change.new
    if change.status == ADDED:
        lines.append(f"new {_kind_word(new.kind)} mode {new.mode:04o} owner {new.uid}:{new.gid}")
    elif change.status == DELETED:
        lines.append(f"deleted {_kind_word(old.kind)} mode {old.mode:04o}")
    else:
        lines.extend(change.details())
    old_data = _content(old, change.old_blob, read_blob)
    new_data = _content(new, change.new_blob, read_blob)
    if old_data is None and new_data is None or old_data == new_data:
        return lines
    a = old_data or b""
    b = new_data or b""
    if is_binary(a) or is_binary(b):
        lines.append(f"Binary files a/{name} and b/{name} differ")
        return lines
    a_label = f"a/{name}" if change.status != ADDED else "/dev/null"
    b_label = f"b/{name}" if change.status != DELETED else "/dev/null"
    lines.extend(
        line.rstrip("\n")
        for line in difflib.unified_diff(
            a.decode().splitlines(keepends=True),
            b.decode().splitlines(keepends=True),
            a_label,
            b_label,
        )
    )
    return lines


def _content(meta: object, blob: bytes | None, read_blob: Callable[[bytes], bytes]) -> bytes | None:
    if meta is None or blob is None or meta.kind not in (FILE, SYMLINK) or meta.link:
        return None
    return read_blob(blob)


def _kind_word(kind: str) -> str:
    return {
        "-": "file",
        "d": "directory",
        "l": "symlink",
        "c": "char device",
        "b": "block device",
        "p": "fifo",
        "s": "socket",
    }[kind]


def stat_summary(changes: Iterable[Change]) -> tuple[list[str], str]:
    """Per-path stat lines and a summary line, like `git show --stat`."""
    counts = {"A": 0, "C": 0, "D": 0}
    lines = []
    for change in changes:
        counts[change.status] += 1
        lines.append(detail_line(change))
    summary = (
        f"{len(lines)} paths changed: {counts['A']} added, {counts['C']} changed, "
        f"{counts['D']} deleted"
    )
    return lines, summary
