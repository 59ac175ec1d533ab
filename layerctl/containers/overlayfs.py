"""The kernel's overlay filesystem: mount, unmount, probe, and full-checkout lower dirs.

What the overlay driver (drivers/overlay.py) and the layer dirs (layerdirs.py) stand
on; it knows nothing of containers. The lower dirs a container mounts are the
per-layer diff dirs of layerdirs.py, top first. A full checkout of one layer
(Store.path("cache", "layers", LAYER_ID), `lower_dir`) serves as the bottom of a
chain too deep to stack, and an older store's checkouts are read as they are. Both
are written to a temporary sibling and renamed into place, so a crash never leaves
a half dir that is used.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import Conflict, LayerctlError
from layerctl.store import debris
from layerctl.store.checkout import checkout
from layerctl.store.debris import CACHE_TMP_PREFIX
from layerctl.store.layers import read_layer

if TYPE_CHECKING:
    import ctypes

    from layerctl.store.repo import Store

MOUNT_OPTIONS = "index=off,redirect_dir=off,metacopy=off,xino=off"
PROBE_PREFIX = ".probe-"


@functools.cache
def libc() -> ctypes.CDLL:
    """glibc, loaded on first use: importing ctypes costs start-up time."""
    import ctypes

    try:  # glibc's soname: find_library would spawn ldconfig (~0.1 s a command)
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        import ctypes.util

        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


MNT_DETACH = 2  # umount2: detach now, finish when no longer busy (a dead probe's mount)


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def syncfs(path: str | bytes) -> None:
    """Flush the filesystem holding `path` (syncfs(2)): one call for a whole tree just
    written, where os.sync() would flush every filesystem of the machine."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc().syncfs(fd) != 0:
            raise OSError(_errno(), f"syncfs {os.fsdecode(path)}")
    finally:
        os.close(fd)


def layers_cache(store: Store) -> str:
    return store.path("cache", "layers")


def checkout_dir(store: Store, layer_id: str) -> str:
    return os.path.join(layers_cache(store), layer_id)


def lower_dir(store: Store, layer_id: str) -> str:
    """The cached full checkout of `layer_id`, extracted now if missing (atomically)."""
    import shutil  # removing only (shutil pulls bz2, lzma)

    final = checkout_dir(store, layer_id)
    if os.path.isdir(final):
        return final
    os.makedirs(layers_cache(store), exist_ok=True)
    debris.clean_dead_dirs(layers_cache(store), CACHE_TMP_PREFIX)
    import tempfile

    tmp = tempfile.mkdtemp(prefix=f"{CACHE_TMP_PREFIX}{os.getpid()}-", dir=layers_cache(store))
    try:
        os.rmdir(tmp)
        checkout(store, read_layer(store, layer_id).root, tmp)
        syncfs(tmp)  # the cache must be complete on disk before it is used
        faults.point("cache.rename-lower")
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            shutil.rmtree(tmp)  # another process extracted it first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# -- mounting ---------------------------------------------------------------------


def _mount(source: str, target: str, fstype: str, options: str) -> None:
    rc = libc().mount(source.encode(), target.encode(), fstype.encode(), 0, options.encode())
    if rc != 0:
        err = _errno()
        raise OSError(err, os.strerror(err))


# fsopen/fsconfig/fsmount/move_mount: one syscall number on every architecture
_FSOPEN, _FSCONFIG, _FSMOUNT, _MOVE_MOUNT = 430, 431, 432, 429
_SET_FLAG, _SET_STRING, _CMD_CREATE = 0, 1, 6
_PAGE = 4096  # mount(2) copies one page of options


def mount_overlay(lowers: str | list[str], upper: str, work: str, merged: str,
                  volatile: bool = False) -> None:
    """Mount `lowers` (top first) under `upper` on `merged`. Each lower dir is passed
    as its own `lowerdir+` parameter (Linux 6.8+), so a deep chain is not bound by
    mount(2)'s one page of options; older kernels get a `:`-joined lowerdir.
    `volatile` (Linux 5.10+): no sync of the upper filesystem, at unmount either."""
    lowers = [lowers] if isinstance(lowers, str) else lowers
    for p in (*lowers, upper, work):
        if any(ch in p for ch in ",:\\"):
            raise LayerctlError(f"cannot mount overlay: path {p!r} contains ',', ':' or '\\'")
    try:
        try:
            _fsmount(lowers, upper, work, merged, volatile)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work},{MOUNT_OPTIONS}"
            options += ",volatile" if volatile else ""
            if len(options) >= _PAGE:
                raise LayerctlError(f"cannot mount overlay on {merged}: {len(lowers)} lower "
                                    "dirs do not fit one page of mount options on this "
                                    "kernel (needs Linux 6.8 for longer chains)") from None
            _mount("overlay", merged, "overlay", options)
    except OSError as e:
        raise LayerctlError(f"cannot mount overlay on {merged}: {e.strerror}") from None


def _fsmount(lowers: list[str], upper: str, work: str, merged: str, volatile: bool) -> None:
    import ctypes

    syscall = libc().syscall
    syscall.restype = ctypes.c_long

    def call(*args: object) -> int:
        rc: int = syscall(*args)
        if rc < 0:
            err = _errno()
            raise OSError(err, os.strerror(err))
        return rc

    fs = call(_FSOPEN, b"overlay", 1)  # FSOPEN_CLOEXEC
    try:
        params = [("lowerdir+", p) for p in lowers]
        params += [("upperdir", upper), ("workdir", work)]
        params += [(k, v) for k, _, v in (o.partition("=") for o in MOUNT_OPTIONS.split(","))]
        for key, value in params:
            call(_FSCONFIG, fs, _SET_STRING, key.encode(), os.fsencode(value), 0)
        if volatile:
            call(_FSCONFIG, fs, _SET_FLAG, b"volatile", None, 0)
        call(_FSCONFIG, fs, _CMD_CREATE, None, None, 0)
        mnt = call(_FSMOUNT, fs, 1, 0)  # FSMOUNT_CLOEXEC
        try:
            # AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH
            call(_MOVE_MOUNT, mnt, b"", -100, os.fsencode(merged), 4)
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def unmount(merged: str) -> None:
    if libc().umount2(merged.encode(), 0) != 0:
        err = _errno()
        if err == errno.EBUSY:
            raise Conflict(f"{merged} is in use (a process has files open or its cwd there)")
        if err == errno.EINVAL and not os.path.ismount(merged):
            return
        raise LayerctlError(f"cannot unmount {merged}: {os.strerror(err)}")


def is_mounted(merged: str) -> bool:
    return os.path.ismount(merged)


def probe() -> str | None:
    """None if overlay mounts work here, else the reason they do not."""
    if os.geteuid() != 0:
        return f"overlay needs root (running as uid {os.geteuid()})"
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return "the kernel has no overlay filesystem"
    except OSError:
        pass
    return None


def probe_mount(scratch: str, remember: str | None = None) -> str | None:
    """Try a real overlay mount under `scratch`; None if it works. With `remember`, a
    success is written there with the boot id and not tried again until a reboot
    (a mount and unmount per store and boot, not per create)."""
    import shutil  # removing only (shutil pulls bz2, lzma)

    reason = probe()
    if reason:
        return reason
    boot = debris.boot_id()
    if remember and boot:
        with contextlib.suppress(OSError), open(remember) as f:
            if f.read().strip() == boot:
                return None
    os.makedirs(scratch, exist_ok=True)
    clean_dead_probes(scratch)
    import tempfile

    tmp = tempfile.mkdtemp(prefix=f"{PROBE_PREFIX}{os.getpid()}-", dir=scratch)
    try:
        lower, upper, work, merged = dirs = [os.path.join(tmp, d) for d in "luwm"]
        for d in dirs:
            os.mkdir(d)
        try:
            try:  # volatile: a plain unmount syncs the upper filesystem (a load's writes)
                mount_overlay(lower, upper, work, merged, volatile=True)
            except LayerctlError:
                mount_overlay(lower, upper, work, merged)  # a kernel before 5.10
        except LayerctlError as e:
            return str(e)
        faults.point("overlay.unmount-probe")
        unmount(merged)
        if remember and boot:
            from layerctl.atomic import write_file

            write_file(remember, boot.encode() + b"\n", durable=False)  # lost: probed again
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_dead_probes(scratch: str) -> list[str]:
    """Remove probe dirs of killed processes, unmounting the probe they left mounted."""

    def detach(path: str) -> None:
        merged = os.path.join(path, "m")
        if os.path.ismount(merged):
            libc().umount2(merged.encode(), MNT_DETACH)

    return debris.clean_dead_dirs(scratch, PROBE_PREFIX, before=detach)
