"""Replacing a small file as one step: the one way layerctl writes its state, settings,
credentials and caches (object packs have their own protocol in store/objects.py)."""

from __future__ import annotations

import os

from layerctl import faults


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd` (os.write may write less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_file(path: str, data: bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Replace `path` with `data`: a reader sees the old file or the new one, never part
    of one. `durable`: fsync the file before the rename and the directory after, so the
    new file survives a crash once this returns (caches pass False: losing one costs a
    recomputation). `mode` is set at creation, so a secret is never readable by others,
    not even while it is written."""
    tmp = f"{path}.tmp.{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a crashed process that had our pid
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        faults.point("atomic.before-rename")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path: str) -> None:
    """Make a rename (or a new entry) in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str, value: object, *, durable: bool = True, mode: int = 0o644) -> None:
    """write_file of `value` as indented JSON with sorted keys and a final newline."""
    import json

    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    write_file(path, text.encode(), durable=durable, mode=mode)
