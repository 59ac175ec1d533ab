"""Reading git refs (loose files and packed-refs), without dulwich.

`images`, `ps` and `status` only read refs; importing dulwich.refs for that costs
~4 ms of their start-up. Reads follow git's rules as dulwich's DiskRefsContainer
does, which `Store.refs` still is for writers and `git pack-refs` handling: a ref
is read only when its name is valid (git check-ref-format, below `refs/` or HEAD,
so no name reaches outside the store), a loose file wins over packed-refs, an
empty or unreadable loose file falls back to packed-refs, and `ref: NAME`
symbolic refs are followed up to 5 deep.
"""

from __future__ import annotations

import os

SYMREF = b"ref: "
_MAX_SYMREF_DEPTH = 5
_BAD_CHARS = frozenset(b" ~^:?*[\\\177")


def valid_ref_name(name: bytes) -> bool:
    """git check-ref-format's rules for a name with at least two components."""
    if b"/" not in name or name.startswith((b".", b"/")) or name.endswith((b"/", b".")):
        return False
    if b"/." in name or b".." in name or b"//" in name or b"@{" in name:
        return False
    if name.endswith(b".lock") or b".lock/" in name:
        return False
    return not any(c < 0x20 or c in _BAD_CHARS for c in name)


def _readable(name: bytes) -> bool:
    return name == b"HEAD" or (name.startswith(b"refs/") and valid_ref_name(name))


def packed_refs(root: str) -> dict[bytes, bytes]:
    """name -> hex id from ROOT/packed-refs ({} when there is none); peeled lines
    (`^id`, the commit an annotated tag points to) are skipped."""
    try:
        with open(os.path.join(root, "packed-refs"), "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines:
        if not line or line.startswith((b"#", b"^")):
            continue
        sha, _, name = line.partition(b" ")
        if len(sha) not in (40, 64) or not name:
            raise ValueError(f"packed-refs has a bad line: {line[:80]!r}")
        out[name] = sha
    return out


class RefReader:
    """The refs of the store at `root`; packed-refs is read again only when it changed
    (`git pack-refs` may run while a TUI holds the store)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._packed: dict[bytes, bytes] = {}
        self._packed_key: tuple[int, int, int] | None = None

    def _packed_refs(self) -> dict[bytes, bytes]:
        try:
            st = os.stat(os.path.join(self.root, "packed-refs"))
        except FileNotFoundError:
            self._packed, self._packed_key = {}, None
            return self._packed
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._packed_key:
            self._packed, self._packed_key = packed_refs(self.root), key
        return self._packed

    def _read_loose(self, name: bytes) -> bytes | None:
        try:
            with open(os.path.join(os.fsencode(self.root), name), "rb") as f:
                line = f.readline()
        except (OSError, UnicodeError):  # missing, a directory, a name the OS refuses
            return None
        return line.rstrip(b"\r\n") or None

    def _read(self, name: bytes) -> bytes | None:
        if not _readable(name):
            return None
        return self._read_loose(name) or self._packed_refs().get(name)

    def get(self, name: bytes) -> bytes | None:
        """The hex id `name` resolves to, following symbolic refs; None if none."""
        value: bytes | None = SYMREF + name
        depth = 0
        while value is not None and value.startswith(SYMREF):
            if depth > _MAX_SYMREF_DEPTH:
                return None
            value = self._read(value[len(SYMREF):])
            depth += 1
        return value

    def under(self, prefix: bytes) -> dict[bytes, bytes]:
        """name (without `prefix/`) -> hex id of every resolvable ref below `prefix`."""
        prefix = prefix.rstrip(b"/") + b"/"
        top = os.path.join(os.fsencode(self.root), prefix)
        start = len(os.fsencode(self.root)) + 1
        names = set()
        for dirpath, _dirs, files in os.walk(top):
            for file in files:
                name = os.path.join(dirpath, file)[start:]
                if valid_ref_name(name):
                    names.add(name)
        names.update(n for n in self._packed_refs() if n.startswith(prefix))
        out = {}
        for name in names:
            value = self.get(name)
            if value is not None:
                out[name[len(prefix):]] = value
        return out
