"""Changes rendered as text: `docker diff` lines, git-style stats and patches."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from layerctl.store.blobstream import read_head
from layerctl.store.diff import ADDED, DELETED, Change
from layerctl.store.meta import FILE, SYMLINK, Meta
from layerctl.words import path_text, quote_name

if TYPE_CHECKING:
    from layerctl.store.repo import Store

BINARY_SNIFF = 8000
# git's big-file idea: content above this is never read for a patch, only named
PATCH_MAX_BYTES = 8 * 1024 * 1024


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


def render_patch(change: Change, store: Store,
                 read_new: Callable[[int], bytes] | None = None) -> list[str]:
    """A git-style patch for one change: header, metadata words, unified diff.

    Content comes from the store's blobs, the new side from `read_new(limit)` when
    given (a container's live file: it returns at most `limit` bytes). A side over
    PATCH_MAX_BYTES is never read whole, whatever its record says: it is shown as
    binary with its size, so a multi-GiB (or sparse) file costs no memory."""
    a_name, b_name = quote_name(b"a/" + change.path), quote_name(b"b/" + change.path)
    lines = [f"diff --layerctl {a_name} {b_name}"]
    old, new = change.old, change.new
    if change.status == ADDED:
        lines.append(f"new {_kind_word(new.kind)} mode {new.mode:04o} owner {new.uid}:{new.gid}")
    elif change.status == DELETED:
        lines.append(f"deleted {_kind_word(old.kind)} mode {old.mode:04o}")
    else:
        lines.extend(change.details())
    old_has, new_has = _has_content(old, change.old_blob), _has_content(new, change.new_blob)
    if not (old_has or new_has):
        return lines
    if old_has and new_has and change.old_blob == change.new_blob and old.kind == new.kind:
        return lines
    a_label = a_name if change.status != ADDED else "/dev/null"
    b_label = b_name if change.status != DELETED else "/dev/null"
    binary = f"Binary files {a_label} and {b_label} differ"
    sizes = [m.size for m, has in ((old, old_has), (new, new_has)) if has]
    if max(sizes) > PATCH_MAX_BYTES:
        return [*lines, f"{binary} (too large to show: {max(sizes)} bytes)"]
    limit = PATCH_MAX_BYTES + 1  # one more tells a file that grew since its size was taken
    a = read_head(store, change.old_blob, limit) if old_has else b""
    if not new_has:
        b = b""
    elif read_new is not None:
        b = read_new(limit)
    else:
        b = read_head(store, change.new_blob, limit)
    if len(a) > PATCH_MAX_BYTES or len(b) > PATCH_MAX_BYTES:
        return [*lines, f"{binary} (too large to show: over {PATCH_MAX_BYTES} bytes)"]
    if a == b:
        return lines
    if is_binary(a) or is_binary(b):
        return [*lines, binary]
    for line in difflib.unified_diff(
        a.decode().splitlines(keepends=True),
        b.decode().splitlines(keepends=True),
        a_label,
        b_label,
    ):
        lines.append(line.rstrip("\n"))
        if not line.endswith("\n"):
            lines.append("\\ No newline at end of file")
    return lines


def _has_content(meta: Meta | None, blob: bytes | None) -> bool:
    """Whether a side has bytes a patch shows (a hardlink member shows none)."""
    return meta is not None and blob is not None and meta.kind in (FILE, SYMLINK) \
        and not meta.link


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
