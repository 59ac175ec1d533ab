"""RootlessMap.faithful: disk metadata of a rootless vfs checkout -> what the store records.
(The end-to-end tests, as a real unprivileged user, are in test_rootless.py.)"""

from __future__ import annotations

from layerctl.containers.rootless import RootlessMap
from layerctl.store.meta import CHAR, DIR, FILE, Meta

USER = 23456
CAP = (b"security.capability", b"\x01\x00\x00\x02 \x00\x00\x00" + b"\x00" * 12)

MAP = RootlessMap(
    USER, USER,
    placeholders={b"dev/null": CHAR},
    xattrs={b"usr/bin/ping": (b"security.capability",), b"etc": (b"trusted.x",)},
    modes={b"odd": 0o755},
)


def disk(kind: str = FILE, mode: int = 0o644, size: int = 0, **kw: object) -> Meta:
    return Meta(kind, mode, USER, USER, 5, size, **kw)


def test_untouched_entries_equal_the_base():
    ping = Meta(FILE, 0o755, 0, 0, 5, 3, xattrs=(CAP,))
    assert MAP.faithful(b"usr/bin/ping", disk(mode=0o755, size=3), ping) == ping
    null = Meta(CHAR, 0o666, 0, 0, 5, rdev=(1, 3))
    assert MAP.faithful(b"dev/null", disk(mode=0o666), null) == null
    etc = Meta(DIR, 0o755, 0, 0, 5, xattrs=((b"trusted.x", b"1"),))
    assert MAP.faithful(b"etc", disk(DIR, 0o755), etc) == etc
    alice = Meta(FILE, 0o600, 1000, 1000, 5, 4)
    assert MAP.faithful(b"home/alice/notes", disk(mode=0o600, size=4), alice) == alice
    odd = Meta(FILE, 0o4755, 0, 0, 5)  # bits the checkout could not apply
    assert MAP.faithful(b"odd", disk(mode=0o755), odd) == odd


def test_changes_keep_what_the_user_could_not_change():
    ping = Meta(FILE, 0o755, 0, 0, 5, 3, xattrs=(CAP,))
    got = MAP.faithful(b"usr/bin/ping", disk(mode=0o750, size=9), ping)
    assert got == ping.replace(mode=0o750, size=9)
    # a chmod'ed placeholder is the device with a new mode
    null = Meta(CHAR, 0o666, 0, 0, 5, rdev=(1, 3))
    assert MAP.faithful(b"dev/null", disk(mode=0o600), null) == null.replace(mode=0o600)
    # ... given content, it is a regular file (owner still the base's: same path, and
    # the type changed, so a new entry: 0:0)
    assert MAP.faithful(b"dev/null", disk(size=5), null) == Meta(FILE, 0o644, 0, 0, 5, 5)


def test_new_entries_are_root_owned_and_other_ids_kept():
    assert MAP.faithful(b"srv/new", disk(size=4), None) == Meta(FILE, 0o644, 0, 0, 5, 4)
    # a directory where the base has a file is new too
    base = Meta(FILE, 0o644, 1000, 1000, 5)
    assert MAP.faithful(b"x", disk(DIR, 0o755), base) == Meta(DIR, 0o755, 0, 0, 5)
    # ids that are not the checkout's (a supplementary group) are recorded as seen
    seen = disk(size=1).replace(gid=4242)
    assert MAP.faithful(b"new", seen, None) == Meta(FILE, 0o644, 0, 4242, 5, 1)
    # no placeholder or lost xattr for paths the base does not have
    assert MAP.faithful(b"usr/bin/ping", disk(), None).xattrs == ()
    assert MAP.faithful(b"dev/null", disk(), None).kind == FILE


def test_setuid_bits_the_kernel_cleared_on_a_write_are_kept():
    su = Meta(FILE, 0o4755, 0, 0, 5, 3)
    written = disk(mode=0o755, size=9).replace(mtime_ns=6)
    assert MAP.faithful(b"su", written, su) == su.replace(size=9, mtime_ns=6)
    wall = Meta(FILE, 0o2755, 0, 5, 5, 3)
    assert MAP.faithful(b"wall", written, wall) == wall.replace(size=9, mtime_ns=6)
    # setgid without group exec is not cleared by the kernel: a real mode change
    odd = Meta(FILE, 0o2745, 0, 0, 5, 3)
    assert MAP.faithful(b"odd2", written.replace(mode=0o745), odd).mode == 0o745
    # a chmod u-s leaves the mtime alone: recorded as a mode change
    assert MAP.faithful(b"su", disk(mode=0o755, size=3), su).mode == 0o755
