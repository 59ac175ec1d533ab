"""The record of every ref move: git reflogs plus layerctl's undo journal.

Every ref move goes through Store._update_ref, which calls `record` while it
holds the ref's lock, before the new value is renamed into place:

- ROOT/logs/<ref>: git's reflog line (`old new committer ts tz<TAB>message`), so
  `git reflog` and `git gc` (which keeps what a reflog names) read it as their own.
  A deleted ref keeps its log, ending in a move to the null id: `rmi` loses nothing.
- ROOT/undo/journal: one line per move, grouped by *operation* (one command: a
  CLI run, one TUI action), plus the container snapshots a destructive step took
  first. `layerctl undo` (layerctl/undo.py) reverses the last operation from it.

Both are appended with O_APPEND (a line is one write) and fsynced. A line for a
move a crash then stopped short of is harmless: undo finds the ref already at its
old value and skips it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from layerctl.record import Record

NULL = "0" * 40
JOURNAL = ("undo", "journal")

_op: list[tuple[str, str]] = []  # the operation running in this process (outermost first)


@contextlib.contextmanager
def operation(label: str) -> Iterator[str]:
    """Group the ref moves made inside into one undoable operation named `label`.
    Nested operations join the outer one (a CLI command calling core functions)."""
    if _op:
        yield _op[0][0]
        return
    _op.append((os.urandom(8).hex(), _clean(label)))
    try:
        yield _op[0][0]
    finally:
        _op.clear()


def _current(default_label: str) -> tuple[str, str]:
    """The running operation, or a new one for this single move."""
    return _op[0] if _op else (os.urandom(8).hex(), _clean(default_label))


def _clean(text: str) -> str:
    return " ".join(text.split())  # one line, no tabs


def _append(path: str, line: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line.encode("utf-8", "surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _committer() -> str:
    from layerctl.identity import default_author

    return default_author()


_identity: list[str] = []


def record(root: str, ref: str, old: str | None, new: str | None, message: str) -> None:
    """Log one ref move (called by Store._update_ref under the ref's lock)."""
    if not _identity:
        _identity.append(_committer())
    now = int(time.time())
    msg = _clean(message) or "update"
    _append(os.path.join(root, "logs", ref),
            f"{old or NULL} {new or NULL} {_identity[0]} {now} +0000\t{msg}\n")
    opid, label = _current(msg)
    _append(os.path.join(root, *JOURNAL),
            f"M\t{opid}\t{now}\t{ref}\t{old or NULL}\t{new or NULL}\t{label}\n")


def record_snapshot(root: str, container_id: str, snapshot: str, base: str,
                    label: str = "snapshot") -> None:
    """Log that a container's pending changes (on `base`) were saved as layer
    `snapshot` before a step that discards them."""
    opid, op_label = _current(label)
    _append(os.path.join(root, *JOURNAL),
            f"S\t{opid}\t{int(time.time())}\t{container_id}\t{snapshot}\t{base}\t{op_label}\n")


def record_undo(root: str, target: str, done: bool) -> None:
    """Log the start (`done` False) or the end of the undo of operation `target`."""
    opid, label = _current("undo")
    kind = "D" if done else "U"
    _append(os.path.join(root, *JOURNAL),
            f"{kind}\t{opid}\t{int(time.time())}\t{target}\t{label}\n")


# -- reading ------------------------------------------------------------------------


class Entry(Record):
    __slots__ = ("kind", "op", "time", "fields", "label")

    def __init__(self, kind: str, op: str, time: int, fields: list[str], label: str):
        self.kind = kind  # M move, S snapshot, U undo begun, D undo done
        self.op = op
        self.time = time
        self.fields = fields
        self.label = label


def read_journal(root: str) -> list[Entry]:
    try:
        with open(os.path.join(root, *JOURNAL), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        parts = raw.split("\t")
        if len(parts) < 4 or not parts[2].isdigit():
            continue  # a line a crash cut short
        out.append(Entry(parts[0], parts[1], int(parts[2]), parts[3:-1], parts[-1]))
    return out


class LogEntry(Record):
    __slots__ = ("old", "new", "who", "time", "message")

    def __init__(self, old: str | None, new: str | None, who: str, time: int, message: str):
        self.old = old
        self.new = new
        self.who = who
        self.time = time
        self.message = message


def read_reflog(root: str, ref: str) -> list[LogEntry]:
    """A ref's reflog, oldest first."""
    try:
        with open(os.path.join(root, "logs", ref), "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    out = []
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        head, _, message = raw.partition("\t")
        parts = head.split(" ")
        if len(parts) < 5 or len(parts[0]) != 40 or len(parts[1]) != 40:
            continue
        try:
            when = int(parts[-2])
        except ValueError:
            continue
        out.append(LogEntry(None if parts[0] == NULL else parts[0],
                            None if parts[1] == NULL else parts[1],
                            " ".join(parts[2:-2]), when, message))
    return out


def logged_refs(root: str, prefix: str = "refs/") -> list[str]:
    """Every ref with a reflog under `prefix` (existing or deleted)."""
    top = os.path.join(root, "logs")
    out = []
    for dirpath, _dirs, files in os.walk(os.path.join(top, prefix)):
        for name in files:
            out.append(os.path.relpath(os.path.join(dirpath, name), top))
    return sorted(out)
