"""A base layer's dir written while its tar is applied (load, pull): the applier hands
each entry it accepts to a child process, which creates it at once. The parent's
Python (tar parse, hashing, trees) and the kernel's file creation then run on two
cores, where the builder (layerbuild.py) runs after the apply and shares one
interpreter lock with its writers.

Only a base layer is mirrored: its dir is every entry of its tree. An upper layer's dir
holds what differs from the layers below, which the tar alone does not say. A tar that
replaces an entry of its own or has whiteouts stops its mirror (`stop`), and its dir is
built from the changeset after all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import shutil
import signal
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeAlias

from layerctl import faults
from layerctl.atomic import write_all
from layerctl.store import debris
from layerctl.store.meta import Meta

from .layerbuild import Pending, new_tmp, settle
from .layerbuild import diff_id_and_dir as diff_id_and_dir_built
from .layerfiles import made_here, set_dir_metas, write_file, write_node, write_symlink

if TYPE_CHECKING:
    from layerctl.store.blobread import BlobReader
    from layerctl.store.fstree import DirRef
    from layerctl.store.repo import Store
    from layerctl.store.staging import Staging
    from layerctl.store.types import StoreLike

_LEN = struct.Struct("<Q")
_BATCH_BYTES = 1 << 20  # contents sent to the child at once
_BATCH_OPS = 512  # entries sent at once (the child starts on the first batch soon)
_PIPE_BYTES = 4 << 20
# operations, in the order the applier accepted the entries
_FILE, _BIG, _CHUNK, _BIG_END, _DIR, _SYMLINK, _NODE, _LINK, _END = range(9)
# a Meta as sent: kind, mode, uid, gid, mtime_ns, size, rdev, xattrs
_MetaT: TypeAlias = ("tuple[str, int, int, int, int, int, tuple[int, int] | None, "
                     "tuple[tuple[bytes, bytes], ...]]")
_PR_SET_PDEATHSIG = 1


def _fields(meta: Meta) -> _MetaT:
    return (meta.kind, meta.mode, meta.uid, meta.gid, meta.mtime_ns, meta.size, meta.rdev,
            meta.xattrs)


def start(store: StoreLike, parent_root: DirRef | None) -> Mirror | None:
    """A mirror writing the dir of a layer applied on `parent_root`, if it is a base
    layer (None) and containers here use layer dirs."""
    from .overlayfs import probe

    if parent_root is not None or probe() is not None:
        return None
    tmp = new_tmp(store)
    faults.point("layerdir.write")
    made = made_here(os.fsencode(os.path.join(tmp, "diff")))
    boot = debris.boot_id()
    parent = os.getpid()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    if pid == 0:  # never returns: no exit handler or buffered file of the parent runs
        code = 1
        try:
            os.close(w)
            code = _child(r, tmp, made, boot, parent)
        except BaseException:  # noqa: BLE001 - the parent sees the exit status
            pass
        finally:
            os._exit(code)
    os.close(r)
    with contextlib.suppress(OSError):  # fewer switches to the child (1 MiB unprivileged)
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return Mirror(store, tmp, pid, w)


def diff_id_and_dir(store: Store | Staging, parent_root: DirRef | None, new_root: DirRef,
                    reader: BlobReader, mirror: Mirror | None) -> tuple[str, Pending | None]:
    """layerbuild.diff_id_and_dir, or, when `mirror` wrote the dir during the apply, the
    DiffID pass while its child finishes (the caller stops the mirror on failure)."""
    if mirror is None or not mirror.live:
        return diff_id_and_dir_built(store, parent_root, new_root, reader)
    from layerctl.changeset.write import write_changeset

    ours, _size = write_changeset(store, parent_root, new_root, None, reader)
    return ours, mirror.result()


class Mirror:
    """The parent's side: entries batched to the child through a pipe."""

    def __init__(self, store: StoreLike, tmp: str, pid: int, fd: int) -> None:
        self.store = store
        self.tmp = tmp
        self.pid = pid
        self.fd = fd
        self.ops: list[tuple[Any, ...]] = []
        self.bytes = 0
        self.live = True  # False once stopped: the dir is built from the changeset

    def file(self, path: bytes, meta: Meta, data: bytes) -> None:
        self._op((_FILE, path, _fields(meta), data), len(data))

    def begin(self, path: bytes, meta: Meta) -> None:
        """A big file, its content sent by `chunk` until `end`."""
        self._op((_BIG, path, _fields(meta)))

    def chunk(self, data: bytes) -> None:
        self._op((_CHUNK, data), len(data))

    def end(self) -> None:
        self._op((_BIG_END,))

    def dir(self, path: bytes) -> None:
        self._op((_DIR, path))

    def symlink(self, path: bytes, meta: Meta, target: bytes) -> None:
        self._op((_SYMLINK, path, _fields(meta), target))

    def node(self, path: bytes, meta: Meta) -> None:
        self._op((_NODE, path, _fields(meta)))

    def link(self, target: bytes, path: bytes) -> None:
        self._op((_LINK, target, path))

    def close(self, dirs: list[tuple[bytes, Meta]]) -> None:
        """The tar is applied: every directory's final metadata, set by the child last."""
        self._op((_END, [(p, _fields(m)) for p, m in dirs]))
        self._flush()
        self._close_pipe()

    def _op(self, op: tuple[Any, ...], size: int = 0) -> None:
        if not self.live:
            return
        self.ops.append(op)
        self.bytes += size
        if self.bytes >= _BATCH_BYTES or len(self.ops) >= _BATCH_OPS:
            self._flush()

    def _flush(self) -> None:
        if not self.ops or not self.live:
            return
        data = pickle.dumps(self.ops, protocol=5)
        self.ops = []
        self.bytes = 0
        try:
            write_all(self.fd, _LEN.pack(len(data)))
            write_all(self.fd, data)
        except OSError:  # the child is gone (it says why in its status)
            self.stop()

    def result(self) -> Pending | None:
        """Wait for the child: the dir, whole and flushed as the builder's, or None when
        it could not be written (the first container then builds it and says why)."""
        if not self.live:
            return None
        self._close_pipe()
        status = _wait(self.pid)
        self.live = False
        if status != 0:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return None
        return Pending(self.store, self.tmp, None)

    def stop(self) -> None:
        """Give up: the child is killed and its dir removed."""
        if not self.live:
            return
        self.live = False
        self.ops = []
        self._close_pipe()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        _wait(self.pid)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _close_pipe(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _wait(pid: int) -> int:
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        return -1


# -- the child ---------------------------------------------------------------


def _child(fd: int, tmp: str, made: tuple[int, int, int] | None, boot: str,
           parent: int) -> int:
    """Write the entries read from `fd` below `tmp`/diff; 0 once the dir is whole."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    from .overlayfs import libc

    libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # its death (kill -9) is ours
    if os.getppid() != parent:
        return 1
    top = os.fsencode(tmp)
    as_root = os.geteuid() == 0
    if as_root:  # nothing below can reach outside the dir, whatever a name says
        os.chroot(top)
        os.chdir("/")
        top = b"/"
    writer = _Writer(os.path.join(top, b"diff"), made, as_root)
    ops = _ops(fd)
    for op in ops:
        code = op[0]
        if code == _END:
            dirs = writer.finish(op[1])
            settle(top, writer.entries, writer.written, dirs, boot)
            return 0
        writer.apply(op, ops)
    return 1  # the parent stopped before the end


def _ops(fd: int) -> Iterator[tuple[Any, ...]]:
    with os.fdopen(fd, "rb") as f:
        while head := f.read(_LEN.size):
            (size,) = _LEN.unpack(head)
            yield from pickle.loads(f.read(size))


class _Writer:
    def __init__(self, dest: bytes, made: tuple[int, int, int] | None, as_root: bool) -> None:
        self.dest = dest
        self.made = made
        self.as_root = as_root
        self.known = {b""}  # directories made
        self.written: list[bytes] = []  # regular files, for fsync
        self.entries = 0

    def _at(self, path: bytes) -> bytes:
        return self.dest + b"/" + path if path else self.dest

    def _parents(self, path: bytes) -> None:
        parent = path.rpartition(b"/")[0]
        if parent not in self.known:
            self._mkdir(parent)

    def _mkdir(self, path: bytes) -> None:
        self._parents(path)
        os.mkdir(self._at(path), 0o700)  # its metadata comes last (finish)
        self.known.add(path)

    def apply(self, op: tuple[Any, ...], ops: Iterator[tuple[Any, ...]]) -> None:
        faults.point("layerdir.mirror-write")  # #N: the child dies at its Nth entry
        code = op[0]
        if code == _DIR:
            if op[1] not in self.known:
                self._mkdir(op[1])
            return
        self.entries += 1
        if code == _LINK:
            self._parents(op[2])
            os.link(self._at(op[1]), self._at(op[2]), follow_symlinks=False)
            return
        path, meta = op[1], Meta(*op[2])
        self._parents(path)
        target = self._at(path)
        if code == _FILE:
            write_file(target, meta, (op[3],), self.as_root, self.made)
            self.written.append(target)
        elif code == _BIG:
            write_file(target, meta, _chunks(ops), self.as_root, self.made)
            self.written.append(target)
        elif code == _SYMLINK:
            write_symlink(target, meta, op[3], self.as_root)
        elif code == _NODE:
            write_node(target, meta, self.as_root)
        else:
            raise ValueError(f"unknown mirror operation {code}")

    def finish(self, dirs: list[tuple[bytes, _MetaT]]) -> list[bytes]:
        """Directories' metadata; returns their paths."""
        metas = [(self._at(p), Meta(*fields)) for p, fields in dirs]
        set_dir_metas(metas, self.as_root)
        return [p for p, _m in metas]


def _chunks(ops: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    for op in ops:
        if op[0] == _BIG_END:
            return
        yield op[1]
