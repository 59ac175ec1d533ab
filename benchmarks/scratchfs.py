"""The benchmarks' scratch directory on a filesystem of their own: a new ext4, made
with mkfs's defaults (a journal), on a loop device with direct I/O (its writes and
flushes reach the host's disk, not the host's page cache).

Why: this VM's root filesystem is ext4 *without* a journal, and there ext4 will not
reuse an inode freed in the last 60 s (360 s while its block is dirty): each new
inode is found by a linear scan that skips every such inode of the block group, one
buffer lookup each. Creating 8,000 files right after deleting 8,000 took 4.6 s of
kernel time instead of 0.13 s, and podman's own load alone varied from 4.5 to 6.4 s
of kernel time for the same reason. Which tool pays depends on where the previous
row deleted its files, so ratios on that disk measure the order of the rows. On a
fresh journaled ext4 the same runs vary by a few percent (docs/design-notes.md,
"Where a load's kernel time went").
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SIZE = "48G"  # sparse: the image grows with what is written (discard gives it back)


def _missing() -> str | None:
    for tool in ("mkfs.ext4", "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    import os

    if os.geteuid() != 0:
        return "not root"
    return None


@contextlib.contextmanager
def scratch_fs(workdir: Path) -> Iterator[str]:
    """Mount a new ext4 on `workdir` for the run; yields a line saying what the
    scratch filesystem is (or why it is the host's)."""
    why = _missing()
    if why:
        yield f"scratch filesystem: the host's ({why})"
        return
    image = workdir.parent / f".{workdir.name}.ext4"
    loop = ""
    mounted = False
    try:
        subprocess.run(["truncate", "-s", SIZE, str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        loop = subprocess.run(["losetup", "-f", "--show", "--direct-io=on", str(image)],
                              check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["mount", "-o", "discard", loop, str(workdir)], check=True)
        mounted = True
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"scratch filesystem not made ({e}); using the host's", file=sys.stderr)
        _teardown(workdir, loop, image, mounted)
        yield "scratch filesystem: the host's (a loop ext4 could not be made)"
        return
    try:
        yield f"scratch filesystem: a new ext4 with a journal on {loop} (direct I/O)"
    finally:
        _teardown(workdir, loop, image, mounted)


def _teardown(workdir: Path, loop: str, image: Path, mounted: bool) -> None:
    if mounted:
        subprocess.run(["umount", "-R", str(workdir)], capture_output=True)
        if subprocess.run(["mountpoint", "-q", str(workdir)]).returncode == 0:
            subprocess.run(["umount", "-l", str(workdir)], capture_output=True)
    if loop:
        subprocess.run(["losetup", "-d", loop], capture_output=True)
    image.unlink(missing_ok=True)
