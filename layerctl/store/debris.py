"""What killed writers leave behind, and how the next writer (or fsck) tells it is dead.

Two kinds of debris:

- temporary files and dirs: layerctl names its own `tmp_<kind>_layerctl-<pid>-…`
  (git's `tmp_` prefix, so a stock `git gc` also knows them); one whose pid is
  gone is removed at once. dulwich's own (`objects/tmp_pack_*`,
  `objects/pack/tmp*.pack`, written by `fetch`) carry no pid and are removed
  once untouched for FOREIGN_AGE: a live fetch keeps writing its file.
- ref locks (`<ref>.lock`): layerctl's writer flock()s the lock file and writes
  MARK into it before the lock appears (store/repo.py links it into place) and
  keeps both until it removes it, so a lock that nobody holds and that carries MARK
  was left by a dead layerctl. Other locks (git's own) are stale once older than
  LOCK_AGE: every writer holds a ref lock for milliseconds.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable

from layerctl.errors import is_no_space

MARK = b"layerctl pid "
LOCK_AGE = 60.0
FOREIGN_AGE = 3600.0
_OURS = "_layerctl-"
INCOMING_PREFIX = "incoming-layerctl-"  # store/staging.py's quarantine dirs
CACHE_TMP_PREFIX = ".tmp-"  # containers/overlayfs.py's lower dirs being extracted


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmtree(path: str) -> None:
    import shutil  # here: every command imports this module, few remove anything

    shutil.rmtree(path, ignore_errors=True)


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), None if there is none (or
    only its zombie): with the pid, it names a process for good (pids are reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) <= 19 or fields[0] == b"Z":
        return None  # a zombie has finished all but being reaped
    return int(fields[19])


def process_alive(pid: int, started: int | None) -> bool:
    """Whether the process that was `pid`, started at `started`, still runs."""
    if not pid_alive(pid):
        return False
    return started is None or start_time(pid) in (None, started)


def temp_prefix(kind: str) -> str:
    """The name prefix of this process's temporary `kind` files ("pack", "spool")."""
    return f"tmp_{kind}{_OURS}{os.getpid()}-"


def _dead_writer(name: str, now: float, path: str) -> bool:
    if name.startswith("pack-") and name.endswith(".pack"):
        # renamed into place by a writer killed before it renamed the index
        # (a live one does that a moment later): git ignores such a pack
        if os.path.exists(path[: -len(".pack")] + ".idx"):
            return False
        return _older(path, now, LOCK_AGE)
    if not name.startswith("tmp"):
        return False
    head, ours, rest = name.partition(_OURS)
    if ours and head.startswith("tmp_"):
        pid = rest.split("-", 1)[0]
        return pid.isdigit() and not pid_alive(int(pid))
    foreign = (name.startswith("tmp_pack_")
               or (name.startswith("tmp") and name.endswith((".pack", ".idx"))))
    return foreign and _older(path, now, FOREIGN_AGE)


def _older(path: str, now: float, age: float) -> bool:
    try:
        return now - os.lstat(path).st_mtime > age
    except FileNotFoundError:
        return False


def clean_temps(directory: str) -> list[str]:
    """Remove the temporary files of dead writers in `directory`; returns their paths."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        if not _dead_writer(name, now, path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            _rmtree(path)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
        removed.append(path)
    return removed


def boot_id() -> str:
    """This boot's id ("" when /proc does not say): what a mark left by this boot
    names, unlike one that a crash or reboot left."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def clean_dead_dirs(parent: str, prefix: str,
                    before: Callable[[str], None] | None = None) -> list[str]:
    """Remove the `<prefix><pid>-…` entries of `parent` whose pid is dead, calling
    `before(path)` first (e.g. to unmount what the dead process left mounted)."""
    try:
        names = os.listdir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            path = os.path.join(parent, name)
            if before is not None:
                before(path)
            _rmtree(path)
            removed.append(path)
    return removed


def clean_atomic_temps(top: str) -> list[str]:
    """Remove the `<name>.tmp.<pid>` files that atomic.write_file of a dead process left
    in the folders right below `top` (cache/<kind>/, containers/<id>/). One level only:
    deeper down are layer dirs and container files, whose names are the user's."""
    removed = []
    try:
        kinds = os.scandir(top)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with kinds:
        for kind in kinds:
            if not kind.is_dir(follow_symlinks=False):
                continue
            with os.scandir(kind.path) as entries:
                for entry in entries:
                    _, dot_tmp, pid = entry.name.rpartition(".tmp.")
                    if (dot_tmp and pid.isdigit() and entry.is_file(follow_symlinks=False)
                            and not pid_alive(int(pid))):
                        os.unlink(entry.path)
                        removed.append(entry.path)
    return removed


def clear(root: str) -> list[str]:
    """Remove every kind of debris of dead writers in the store at `root` (for fsck)."""
    objects = os.path.join(root, "objects")
    removed = clean_stale_locks(os.path.join(root, "refs"))
    removed += clean_temps(objects) + clean_temps(os.path.join(objects, "pack"))
    removed += clean_dead_dirs(objects, INCOMING_PREFIX)
    removed += clean_dead_dirs(os.path.join(root, "cache", "layers"), CACHE_TMP_PREFIX)
    removed += clean_dead_dirs(os.path.join(root, "cache", "overlay"), CACHE_TMP_PREFIX)
    removed += clean_atomic_temps(os.path.join(root, "cache"))
    removed += clean_atomic_temps(os.path.join(root, "containers"))
    return removed


# -- ref locks -----------------------------------------------------------------------


def hold_lock(fd: int) -> None:
    """Mark a freshly created ref lock as held by this (live) process."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        os.write(fd, MARK + str(os.getpid()).encode() + b"\n")
    except OSError as e:
        # On a full disk the ref update fails a moment later with the real reason;
        # unmarked, the lock is still known stale by its age if this process dies.
        if not is_no_space(e):
            raise


def clear_if_stale(lock: str) -> bool:
    """Remove `lock` if its writer is dead; True if it was removed (or is gone)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # a live layerctl holds it
            raise
        st = os.fstat(fd)
        head = os.pread(fd, 64, 0)
        stale = head.startswith(MARK) or time.time() - st.st_mtime > LOCK_AGE
        if not stale:
            return False
        try:
            now = os.lstat(lock)
        except FileNotFoundError:
            return True
        # We hold the flock of this inode, so no other layerctl can remove it and
        # put a fresh lock in its place between this check and the unlink.
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(lock)
        return True
    finally:
        os.close(fd)


def lock_holder(lock: str) -> str:
    """Who holds `lock`, for the "locked" error ("process 123" or "another process")."""
    try:
        with open(lock, "rb") as f:
            head = f.read(64)
    except OSError:
        head = b""
    if head.startswith(MARK):
        pid = head[len(MARK):].strip()
        if pid.isdigit():
            return f"layerctl process {pid.decode()}"
    return "another process"


def clean_stale_locks(refs_dir: str) -> list[str]:
    """Remove every stale `*.lock` under `refs_dir` (and packed-refs.lock beside it)."""
    removed = []
    candidates = [os.path.join(os.path.dirname(refs_dir), "packed-refs.lock")]
    for top, _dirs, files in os.walk(refs_dir):
        candidates.extend(os.path.join(top, f) for f in files if f.endswith(".lock"))
    for lock in candidates:
        if os.path.lexists(lock) and clear_if_stale(lock):
            removed.append(lock)
    return removed
