"""Installed packages read straight from a layer's tree (no package manager): Debian
dpkg, Alpine apk and RPM (sqlite rpmdb) databases, the changes between two trees,
and which package owns a path.

Cost follows changes: a database is parsed only when its blob differs from one
already parsed (results are cached by blob id), so walking a chain of layers reads
each distinct database once; dpkg's per-package file lists are cached the same way.
Every reader is bounded (MAX_DB bytes) and treats its input as hostile: a database
that cannot be parsed yields one warning line and counts as unknown, never a
traceback and never a made-up diff.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from layerctl.insight.pkgdb import (
    Malformed,
    Package,
    parse_apk_installed,
    parse_dpkg_status,
    parse_rpmdb,
)
from layerctl.record import Frozen
from layerctl.store.fstree import DirRef
from layerctl.store.meta import FILE
from layerctl.store.names import unmangle
from layerctl.store.objects import MODE_TREE
from layerctl.store.pathlookup import PathLookup, parse_path

if TYPE_CHECKING:
    from layerctl.store.repo import Store

MAX_DB = 64 << 20  # bytes read of one database file
MAX_LIST = 16 << 20  # bytes read of one dpkg .list file

DPKG_STATUS = b"var/lib/dpkg/status"
DPKG_INFO = b"var/lib/dpkg/info"
DPKG_LISTS = "dpkg-owners"  # cache/dpkg-owners/<info dir tree id>: which lists name a path
# path -> the list file naming it, or the lists when several do
ListedBy = dict[bytes, "bytes | tuple[bytes, ...]"]
APK_DB = b"lib/apk/db/installed"
RPM_DBS = (b"var/lib/rpm/rpmdb.sqlite", b"usr/lib/sysimage/rpm/rpmdb.sqlite")
DB_PATHS = {"deb": (DPKG_STATUS,), "apk": (APK_DB,), "rpm": RPM_DBS}


class PackageChange(Frozen):
    __slots__ = ("op", "kind", "key", "old", "new")

    def __init__(self, op: str, kind: str, key: str, old: Package | None,
                 new: Package | None) -> None:
        self.op = op  # "+" added, "-" removed, "~" version (or arch) changed
        self.kind = kind
        self.key = key
        self.old = old
        self.new = new

    @property
    def downgrade(self) -> bool:
        from layerctl.insight.pkgversion import COMPARE  # version rules: diffs only, not owners

        return (self.op == "~" and self.old.version != self.new.version
                and COMPARE[self.kind](self.new.version, self.old.version) < 0)

    def text(self) -> str:
        """'+curl 7.88.1-10', '-vim', '~libc6 2.36-9 -> 2.36-9+deb12u1'."""
        if self.op == "+":
            return f"+{self.key} {self.new.version}"
        if self.op == "-":
            return f"-{self.key}"
        if self.old.version == self.new.version:
            return f"~{self.key} {self.new.version} ({self.old.arch} -> {self.new.arch})"
        return (f"~{self.key} {self.old.version} -> {self.new.version}"
                + (" (downgrade)" if self.downgrade else ""))

    def as_json(self) -> dict:
        return {"op": {"+": "added", "-": "removed"}.get(
                    self.op, "downgraded" if self.downgrade else "upgraded"),
                "format": self.kind, "package": self.key,
                "old": self.old.version if self.old else None,
                "new": self.new.version if self.new else None}


_OP_ORDER = {"+": 0, "~": 1, "-": 2}


# -- trees --------------------------------------------------------------------------


class LayerTree:
    """A layer's filesystem as the readers see it: regular files by path, each with a
    content key (its blob id) so unchanged databases are recognised without reading."""

    def __init__(self, store: Store, root: DirRef, label: str, lookup: object = None) -> None:
        self.store = store
        self.root = root
        self.label = label
        self.lookup = lookup or PathLookup(store)
        self._listings: dict[bytes, tuple[Hashable, dict[bytes, Hashable]] | None] = {}

    def file(self, path: bytes) -> tuple[Hashable, int] | None:
        """(content key, size) of the regular file at `path`, else None."""
        entry = self.lookup.probe(self.root, parse_path(path)).entry
        if entry is None or entry[0].kind != FILE or not isinstance(entry[1], bytes):
            return None
        return entry[1], entry[0].size

    def read(self, key: Hashable, limit: int) -> bytes:
        from layerctl.store.blobstream import read_head

        return read_head(self.store, key, limit)

    def listing(self, path: bytes) -> tuple[Hashable, dict[bytes, Hashable]] | None:
        """(key of the directory, {name: content key}) of the regular files (and
        symlinks) in the directory at `path`."""
        if path in self._listings:
            return self._listings[path]
        entry = self.lookup.probe(self.root, parse_path(path)).entry
        found = None
        if entry is not None and isinstance(entry[1], DirRef):
            ref = entry[1]
            found = ref.rootfs, {unmangle(n): sha for n, mode, sha in
                                 self.store.read_tree(ref.rootfs) if mode != MODE_TREE}
        self._listings[path] = found
        return found


class PendingTree:
    """A container's view: its base layer with the pending changes on top; new content
    is read through `read_new(path, limit)` (the entry the scan saw)."""

    def __init__(self, base: LayerTree, changes: list, read_new: Callable[[bytes, int], bytes],
                 label: str) -> None:
        self.base = base
        self.label = label
        self.read_new = read_new
        self.by_path = {c.path: c for c in changes}

    def _gone(self, path: bytes) -> bool:
        parts = path.split(b"/")
        for k in range(1, len(parts)):
            ch = self.by_path.get(b"/".join(parts[:k]))
            if ch is not None and (ch.status == "D" or (ch.new is not None
                                                       and ch.new.kind != "d")):
                return True
        return False

    def _pending_file(self, path: bytes) -> tuple[Hashable, int] | None | bool:
        ch = self.by_path.get(path)
        if ch is None:
            return None if self._gone(path) else False
        if ch.status == "D" or ch.new is None or ch.new.kind != FILE:
            return None
        return ("pending", path, ch.new_blob), ch.new.size

    def file(self, path: bytes) -> tuple[Hashable, int] | None:
        mine = self._pending_file(path)
        return self.base.file(path) if mine is False else mine

    def read(self, key: Hashable, limit: int) -> bytes:
        if isinstance(key, tuple) and key and key[0] == "pending":
            return self.read_new(key[1], limit)
        return self.base.read(key, limit)

    def listing(self, path: bytes) -> tuple[Hashable, dict[bytes, Hashable]] | None:
        if self._gone(path):
            return None
        found = self.base.listing(path)
        names = dict(found[1]) if found else {}
        prefix = path + b"/"
        touched = False
        for p, ch in self.by_path.items():
            if not p.startswith(prefix) or b"/" in p[len(prefix):]:
                continue
            touched = True
            name = p[len(prefix):]
            if ch.status == "D" or ch.new is None or ch.new.kind == "d":
                names.pop(name, None)
            else:
                names[name] = ("pending", p, ch.new_blob)
        if found is None and not touched:
            return None
        key = (found[0] if found else None, tuple(sorted(
            (n, k) for n, k in names.items() if isinstance(k, tuple))))
        return key, names


def pending_trees(pkgs: Packages, p: object) -> tuple[LayerTree, PendingTree]:
    """(base layer, container view) trees of a container's pending changes `p`
    (containers.worktree.Pending); new content is the very entry the scan saw."""
    from layerctl.beneath import Changed
    from layerctl.containers.changes import read_entry
    from layerctl.errors import Conflict
    from layerctl.store.layers import read_layer

    base = pkgs.tree(read_layer(pkgs.store, p.base_id).root, p.base_id[:12])

    def read_new(path: bytes, limit: int) -> bytes:
        obs = p.scan.observed.get(path)
        if obs is None:
            return b""
        try:
            return read_entry(p.view, obs.real, obs.st, limit) or b""
        except Changed:
            raise Conflict(f"{path.decode('utf-8', 'replace')} changed while being read; "
                           "try again") from None

    return base, PendingTree(base, p.changes, read_new, p.container.name)


# -- the reader ---------------------------------------------------------------------


class _Db:
    __slots__ = ("packages", "owners")

    def __init__(self, packages: dict[str, Package],
                 owners: dict[bytes, str] | None = None) -> None:
        self.packages = packages
        self.owners = {} if owners is None else owners  # path -> key (not dpkg's)


# a database and how it answers "which package lists one of these spellings?"
_OwnerIndex = tuple[_Db, Callable[[tuple[bytes, ...]], "str | None"]]


class Packages:
    """Reads and caches package databases across trees; `warnings` collects one line
    per database that could not be read. (A plain class: no dataclasses on `waste`'s
    start-up path.)"""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.warnings: list[str] = []
        self._dbs: dict[tuple, _Db | None] = {}
        self._dpkg_lists: dict[Hashable, tuple[tuple[bytes, ...], ListedBy]] = {}
        self._dpkg_readers: dict[tuple[Hashable, int], dict[bytes, tuple[int, str]]] = {}
        self._warned_lists: set[Hashable] = set()
        self._trees: dict[DirRef, LayerTree] = {}
        # (id(tree), kind) -> where that database is in it; trees live as long as self
        self._located: dict[tuple[int, str], tuple | None] = {}
        self._lookup: object = None

    def tree(self, root: DirRef, label: str) -> LayerTree:
        """One LayerTree per root, so what it has listed is listed once."""
        found = self._trees.get(root)
        if found is None:
            if self._lookup is None:
                self._lookup = PathLookup(self.store)
            found = self._trees[root] = LayerTree(self.store, root, label, self._lookup)
        return found

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def _locate(self, tree: object, kind: str) -> tuple[bytes, Hashable, int] | None:
        for path in DB_PATHS[kind]:
            found = tree.file(path)
            if found is not None:
                return path, found[0], found[1]
        return None

    def _db(self, tree: object, kind: str) -> _Db | None | bool:
        """The database of `kind` in `tree`: False when there is none, None when it
        cannot be read (a warning says why)."""
        loc = self._located.get((id(tree), kind), ())
        if loc == ():
            loc = self._located[(id(tree), kind)] = self._locate(tree, kind)
        if loc is None:
            return False
        path, key, size = loc
        cache_key = (kind, key)
        if cache_key in self._dbs:
            return self._dbs[cache_key]
        where = f"{path.decode('utf-8', 'replace')} in {tree.label}"
        db = None
        if size > MAX_DB:
            self._warn(f"package database {where} is {size} bytes (over {MAX_DB}); "
                       "not read")
        else:
            try:
                data = tree.read(key, MAX_DB + 1)
                if len(data) > MAX_DB:
                    raise Malformed(f"larger than {MAX_DB} bytes")
                if kind == "deb":
                    db = _Db(parse_dpkg_status(data, where))
                elif kind == "apk":
                    db = _Db(*parse_apk_installed(data, where))
                else:
                    db = _Db(*parse_rpmdb(data))
            except (Malformed, struct.error, ValueError, OverflowError) as e:
                self._warn(f"unreadable package database {where}: {e}")
        self._dbs[cache_key] = db
        return db

    def installed(self, tree: object) -> dict[str, dict[str, Package] | None]:
        """{format: packages (None: unreadable)} for each database present in `tree`."""
        out = {}
        for kind in DB_PATHS:
            db = self._db(tree, kind)
            if db is not False:
                out[kind] = db.packages if db is not None else None
        return out

    def of_layer(self, layer: object) -> list[PackageChange]:
        """The packages `layer` (a store.layers.Layer) adds, removes or changes against
        its parent: what `log --stat` and the TUI's log show."""
        from layerctl.store.layers import read_layer

        old = None
        if layer.parent:
            old = self.tree(read_layer(self.store, layer.parent).root, layer.parent[:12])
        return self.changes(old, self.tree(layer.root, layer.id[:12]))

    def changes(self, old: object | None, new: object) -> list[PackageChange]:
        """What the packages of `new` add, remove and change against `old` (None: the
        empty filesystem). A database present with the same content in both is not
        read; an unreadable one on either side contributes nothing."""
        out: list[PackageChange] = []
        for kind in DB_PATHS:
            a = self._locate(old, kind) if old is not None else None
            b = self._locate(new, kind)
            if a is None and b is None or (a and b and a[1] == b[1]):
                continue
            da = self._db(old, kind) if a else False
            db = self._db(new, kind) if b else False
            if da is None or db is None:
                continue
            out.extend(diff_packages(kind, da.packages if da else {},
                                     db.packages if db else {}))
        return out

    def owner(self, tree: object, path: bytes) -> Package | None:
        """The installed package that lists `path` in `tree`, when one does."""
        return self.owners(tree, [path])[path]

    def owners(self, tree: object, paths: list[bytes]) -> dict[bytes, Package | None]:
        """owner() of each of `paths`: the databases of `tree`, dpkg's lists and who
        reads them are looked up once for all (waste asks hundreds of paths a layer).
        Formats are tried in order, a later one's database read only when a path is
        owned by none before it."""
        out: dict[bytes, Package | None] = {}
        found: dict[str, _OwnerIndex | None] = {}  # kind -> (db, its path -> key lookup)
        for path in paths:
            p = path.strip(b"/")
            spellings = (p, _merged_usr(p))
            out[path] = None
            for kind in DB_PATHS:
                if kind not in found:
                    found[kind] = self._owner_index(tree, kind)
                index = found[kind]
                if index is None:
                    continue
                db, key_of = index
                key = key_of(spellings)
                if key is not None and key in db.packages:
                    out[path] = db.packages[key]
                    break
        return out

    def _owner_index(self, tree: object, kind: str) -> _OwnerIndex | None:
        """(database, spellings -> key of the package listing one) for `kind` in `tree`;
        None when there is no such database or it cannot be read."""
        db = self._db(tree, kind)
        if not isinstance(db, _Db):
            return None
        if kind != "deb":
            return db, lambda spellings: next(
                (db.owners[p] for p in spellings if p in db.owners), None)
        found = tree.listing(DPKG_INFO)
        if found is None:
            return db, lambda _spellings: None
        lists = self._dpkg_lists.get(found[0])
        if lists is None:
            lists = self._dpkg_lists[found[0]] = self._kept_lists(tree, found)
        readers = self._dpkg_readers.get((found[0], id(db)))
        if readers is None:
            readers = self._dpkg_readers[(found[0], id(db))] = self._list_readers(
                tree, db, found[1], lists[0])
        return db, lambda spellings: _dpkg_owner(lists[1], readers, spellings)

    def _list_readers(self, tree: object, db: _Db, names: dict[bytes, Hashable],
                      too_big: tuple[bytes, ...]) -> dict[bytes, tuple[int, str]]:
        """{list file name: (place in the status file, key) of the first installed
        package that reads it}: <name>:<arch>.list, else <name>.list."""
        out: dict[bytes, tuple[int, str]] = {}
        for i, pkg in enumerate(db.packages.values()):
            name = f"{pkg.name}:{pkg.arch}.list".encode()
            if name not in names:
                name = f"{pkg.name}.list".encode()
                if name not in names:
                    continue
            if name in too_big and names[name] not in self._warned_lists:
                self._warned_lists.add(names[name])
                self._warn(f"{DPKG_INFO.decode()}/{pkg.name}.list in {tree.label} is "
                           f"over {MAX_LIST} bytes; its files are not attributed")
            out.setdefault(name, (i, pkg.key))
        return out

    def _kept_lists(self, tree: object, found: tuple[Hashable, dict[bytes, Hashable]],
                    ) -> tuple[tuple[bytes, ...], ListedBy]:
        """(the lists over MAX_LIST, {path: the list naming it, or a tuple of the lists
        when several do}), kept in the store's cache under the info directory's tree id
        (which fixes every list in it), so a store reads the lists once."""
        from layerctl.store import cache

        key = found[0].hex() if isinstance(found[0], bytes) else ""  # a container's: not kept
        kept = cache.load(self.store, DPKG_LISTS, key) if key else None
        if (isinstance(kept, tuple) and len(kept) == 3 and kept[0] == MAX_LIST
                and isinstance(kept[1], tuple) and isinstance(kept[2], dict)
                and all(type(v) is bytes or type(v) is tuple for v in kept[2].values())):
            return kept[1], kept[2]  # (a malformed file is read again from the lists)
        too_big, paths = self._list_paths(tree, found[1])
        if key:
            cache.save(self.store, DPKG_LISTS, key, (MAX_LIST, too_big, paths))
        return too_big, paths

    def _list_paths(self, tree: object, names: dict[bytes, Hashable],
                    ) -> tuple[tuple[bytes, ...], ListedBy]:
        too_big: list[bytes] = []
        paths: ListedBy = {}
        setdefault = paths.setdefault
        for name, blob in names.items():
            if not name.endswith(b".list"):
                continue
            data = tree.read(blob, MAX_LIST + 1)
            if len(data) > MAX_LIST:
                too_big.append(name)
                continue
            for line in data.split(b"\n"):
                if line[:1] == b"/":
                    path = line[1:].rstrip(b"/")
                    prev = setdefault(path, name)
                    if prev is name:
                        continue
                    if isinstance(prev, tuple):  # a directory most of the time: many list it
                        if name not in prev:
                            paths[path] = (*prev, name)
                    elif prev != name:
                        paths[path] = (prev, name)
        return tuple(too_big), paths


def _dpkg_owner(lists: ListedBy, readers: dict[bytes, tuple[int, str]],
                spellings: tuple[bytes, ...]) -> str | None:
    """dpkg keeps each package's files in info/<pkg>[:arch].list. Which lists name a
    path is a fact of the info directory alone (`lists`: read once per directory and
    kept, Packages._kept_lists); the status file only says which installed package
    reads which list (`readers`), and the first of them in its order that lists a
    path owns it."""
    for p in spellings:
        listed = lists.get(p)
        if listed is None:
            continue
        names = listed if isinstance(listed, tuple) else (listed,)
        firsts = [readers[n] for n in names if n in readers]
        if firsts:
            return min(firsts)[1]
    return None


_MERGED_USR = frozenset((b"bin", b"sbin", b"lib", b"lib32", b"lib64", b"libx32"))


def _merged_usr(path: bytes) -> bytes:
    """The other spelling of a path under merged /usr (dpkg lists /bin/ls while the
    file lives at /usr/bin/ls, and the reverse)."""
    head, slash, rest = path.partition(b"/")
    if head == b"usr":
        top, slash, _ = rest.partition(b"/")
        return rest if slash and top in _MERGED_USR else path
    return b"usr/" + path if slash and head in _MERGED_USR else path


def diff_packages(kind: str, old: dict[str, Package], new: dict[str, Package],
                  ) -> list[PackageChange]:
    out = []
    for key in old.keys() | new.keys():
        a, b = old.get(key), new.get(key)
        if a is None:
            out.append(PackageChange("+", kind, key, None, b))
        elif b is None:
            out.append(PackageChange("-", kind, key, a, None))
        elif (a.version, a.arch) != (b.version, b.arch):
            out.append(PackageChange("~", kind, key, a, b))
    out.sort(key=lambda c: (_OP_ORDER[c.op], c.key))
    return out


def summary_line(changes: list[PackageChange], limit: int = 20) -> str:
    """'packages: +curl 7.88.1-10 ~libc6 2.36-9 -> 2.36-9+deb12u1 -vim' (the first
    `limit` changes, then a count)."""
    words = [c.text() for c in changes[:limit]]
    if len(changes) > limit:
        words.append(f"(+{len(changes) - limit} more)")
    return "packages: " + " ".join(words)

