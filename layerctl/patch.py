"""Changes rendered as text: `docker diff` lines, git-style stats and patches."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from layerctl.store.blobstream import read_head
from layerctl.store.diff import ADDED, DELETED, Change
from layerctl.store.meta import FILE, KIND_NAMES, SYMLINK, Meta
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
    return file_patch(change, store, read_new).lines()


@dataclass(frozen=True)
class Hunk:
    """One `@@` hunk: difflib's grouped opcodes (tag, i1, i2, j1, j2) over the lines."""

    header: str
    ops: tuple[tuple[str, int, int, int, int], ...]


@dataclass
class FilePatch:
    """A change as a patch: its header lines and, for text, its hunks over the old
    (`a`) and new (`b`) lines (kept ends). Renders itself and applies some hunks."""

    change: Change
    header: list[str]
    a: list[str] = field(default_factory=list)
    b: list[str] = field(default_factory=list)
    hunks: list[Hunk] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.header)
        for h in self.hunks:
            out.extend(self.hunk_lines(h))
        return out

    def hunk_lines(self, h: Hunk) -> list[str]:
        out = [h.header]
        for tag, i1, i2, j1, j2 in h.ops:
            if tag == "equal":
                _add(out, " ", self.a[i1:i2])
                continue
            if tag in ("replace", "delete"):
                _add(out, "-", self.a[i1:i2])
            if tag in ("replace", "insert"):
                _add(out, "+", self.b[j1:j2])
        return out

    def split(self, h: Hunk) -> list[Hunk]:
        """`h` as one hunk per change run in it (git add -p's `s`), each with the
        context lines around it that `h` holds."""
        ops = h.ops
        changes = [k for k, op in enumerate(ops) if op[0] != "equal"]
        if len(changes) < 2:
            return [h]
        out = []
        for k in changes:
            group = [ops[k]]
            if k > 0 and ops[k - 1][0] == "equal":
                _t, i1, i2, j1, j2 = ops[k - 1]
                n = min(CONTEXT, i2 - i1)
                group.insert(0, ("equal", i2 - n, i2, j2 - n, j2))
            if k + 1 < len(ops) and ops[k + 1][0] == "equal":
                _t, i1, i2, j1, j2 = ops[k + 1]
                n = min(CONTEXT, i2 - i1)
                group.append(("equal", i1, i1 + n, j1, j1 + n))
            out.append(_hunk(group))
        return out

    def partial(self, chosen: list[Hunk]) -> bytes:
        """The old content with only the `chosen` hunks applied."""
        edits = [op for h in chosen for op in h.ops if op[0] != "equal"]
        out: list[str] = []
        pos = 0
        for _tag, i1, i2, j1, j2 in sorted(edits, key=lambda op: op[1]):
            out.extend(self.a[pos:i1])
            out.extend(self.b[j1:j2])
            pos = i2
        out.extend(self.a[pos:])
        return "".join(out).encode()


CONTEXT = 3  # lines of context, as git diff


def _add(out: list[str], mark: str, lines: list[str]) -> None:
    for line in lines:
        out.append(mark + line.rstrip("\n"))
        if not line.endswith("\n"):
            out.append("\\ No newline at end of file")


def _range(start: int, stop: int) -> str:
    """A unified diff's `start,length` as difflib writes it (1-based; 0 if empty)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start if not length else start + 1},{length}"


def _hunk(group: list[tuple[str, int, int, int, int]]) -> Hunk:
    first, last = group[0], group[-1]
    return Hunk(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@", tuple(group))


def file_patch(change: Change, store: object,
               read_new: Callable[[int], bytes] | None = None) -> FilePatch:
    """The patch of one change (see render_patch); text changes get hunks."""
    a_name, b_name = quote_name(b"a/" + change.path), quote_name(b"b/" + change.path)
    lines = [f"diff --layerctl {a_name} {b_name}"]
    old, new = change.old, change.new
    if change.status == ADDED:
        lines.append(f"new {KIND_NAMES[new.kind]} mode {new.mode:04o} owner {new.uid}:{new.gid}")
    elif change.status == DELETED:
        lines.append(f"deleted {KIND_NAMES[old.kind]} mode {old.mode:04o}")
    else:
        lines.extend(change.details())
    old_has, new_has = _has_content(old, change.old_blob), _has_content(new, change.new_blob)
    if not (old_has or new_has):
        return FilePatch(change, lines)
    if old_has and new_has and change.old_blob == change.new_blob and old.kind == new.kind:
        return FilePatch(change, lines)
    a_label = a_name if change.status != ADDED else "/dev/null"
    b_label = b_name if change.status != DELETED else "/dev/null"
    binary = f"Binary files {a_label} and {b_label} differ"
    sizes = [m.size for m, has in ((old, old_has), (new, new_has)) if has]
    if max(sizes) > PATCH_MAX_BYTES:
        return FilePatch(change, [*lines, f"{binary} (too large to show: {max(sizes)} bytes)"])
    limit = PATCH_MAX_BYTES + 1  # one more tells a file that grew since its size was taken
    a = read_head(store, change.old_blob, limit) if old_has else b""
    if not new_has:
        b = b""
    elif read_new is not None:
        b = read_new(limit)
    else:
        b = read_head(store, change.new_blob, limit)
    if len(a) > PATCH_MAX_BYTES or len(b) > PATCH_MAX_BYTES:
        return FilePatch(change, [*lines, f"{binary} (too large to show: over "
                                          f"{PATCH_MAX_BYTES} bytes)"])
    if a == b:
        return FilePatch(change, lines)
    if is_binary(a) or is_binary(b):
        return FilePatch(change, [*lines, binary])
    a_lines = a.decode().splitlines(keepends=True)
    b_lines = b.decode().splitlines(keepends=True)
    groups = difflib.SequenceMatcher(None, a_lines, b_lines).get_grouped_opcodes(CONTEXT)
    hunks = [_hunk(group) for group in groups]
    if hunks:
        lines += [f"--- {a_label}", f"+++ {b_label}"]
    return FilePatch(change, lines, a_lines, b_lines, hunks)


def _has_content(meta: Meta | None, blob: bytes | None) -> bool:
    """Whether a side has bytes a patch shows (a hardlink member shows none)."""
    return meta is not None and blob is not None and meta.kind in (FILE, SYMLINK) \
        and not meta.link


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
