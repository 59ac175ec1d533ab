"""Reversible name mangling for git tree entries and byte escaping for records.

Git accepts any bytes in a tree entry name except '/' and NUL, but `git fsck`
rejects '.', '..' and '.git' (and its HFS/NTFS look-alikes) and checks
`.gitmodules` blobs. Such names are stored as '%' + percent-encoding; every
other name is stored verbatim so that `git show LAYER:rootfs/etc/os-release`
works.
"""

from __future__ import annotations

import re

MANGLE_PREFIX = b"%"
# Code points HFS+ ignores when comparing names (git's is_hfs_dotgit list).
_HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
_RISKY_PREFIXES = (".git", "git~", "gitmod~", "gi7eba~", "gi250a~", "gi7d29~")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+,@")


def needs_mangling(name: bytes) -> bool:
    """True when `name` cannot be stored verbatim as a git tree entry."""
    if name in (b".", b"..") or name.startswith(MANGLE_PREFIX):
        return True
    if name[:1] not in (b".", b"g", b"G"):
        return False
    folded = _HFS_IGNORED.sub("", name.decode("utf-8", "replace")).lower()
    return folded.startswith(_RISKY_PREFIXES)


def _percent(data: bytes, safe: frozenset[int]) -> bytes:
    return b"".join(bytes((c,)) if c in safe else b"%%%02X" % c for c in data)


def _unpercent(data: bytes) -> bytes:
    # Split on '%' rather than walking byte by byte: reading a tree's records
    # unescapes every name in it, and most have no '%' at all. The same
    # two-character int() per escape as before, so malformed input still raises
    # ValueError (an escape cut short by the next '%' included).
    if b"%" not in data:
        return data
    parts = data.split(b"%")
    out = [parts[0]]
    last = len(parts) - 1
    for i in range(1, last + 1):
        part = parts[i]
        if len(part) < 2 and i != last:
            raise ValueError(f"invalid escape %{part.decode('ascii', 'replace')}%")
        out.append(bytes((int(part[:2], 16),)))
        out.append(part[2:])
    return b"".join(out)


def mangle(name: bytes) -> bytes:
    """Filesystem name -> git tree entry name (identity for ordinary names)."""
    if not name or b"/" in name or b"\0" in name:
        raise ValueError(f"not a file name: {name!r}")
    if needs_mangling(name):
        return MANGLE_PREFIX + _percent(name, _SAFE)
    return name


def unmangle(entry: bytes) -> bytes:
    """Git tree entry name -> filesystem name."""
    if entry.startswith(MANGLE_PREFIX):
        return _unpercent(entry[1:])
    return entry


# Records are text: one entry a line, fields split by spaces. Names and xattr
# values are escaped so any byte string fits on one line.
_RECORD_SAFE = frozenset(range(0x21, 0x7F)) - {ord("%"), ord("="), ord(" ")}


def escape(data: bytes) -> str:
    """Bytes -> one printable token (percent-encoding, ASCII only)."""
    return _percent(data, _RECORD_SAFE).decode("ascii")


def unescape(token: str) -> bytes:
    """Inverse of escape()."""
    if "%" not in token:
        return token.encode("ascii")
    return _unpercent(token.encode("ascii"))
