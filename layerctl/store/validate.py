"""The rules a layer object must follow, checked on objects that came from outside.

`fetch` runs them on every new layer before any ref points at it, and `fsck`
on every layer a ref reaches: the same rules once. A layer commit's tree is
exactly config.json (a JSON object), rootfs/ and meta/ (docs/design-notes.md);
meta/ mirrors rootfs/'s directories; every tree entry name decodes to a
plain file name (no '/', NUL, '.', '..', canonical mangling, no duplicates);
every record line is sane (kind, mode, ids, size matching the blob, rdev only
on devices, `link=` only to an earlier non-directory entry of the same layer
in walk order). Problems are collected as one line each; nothing is trusted
until a layer passed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from layerctl.store.fstree import EMPTY_BLOB, RECORD, DirRef, git_mode, lookup
from layerctl.store.layers import SOURCE, SOURCE_NAMES, split_trailers
from layerctl.store.meta import (
    DEVICE_KINDS,
    DIR,
    FILE,
    SYMLINK,
    Meta,
    parse_record,
)
from layerctl.store.names import mangle, unmangle
from layerctl.store.objects import (
    BLOB,
    COMMIT,
    MODE_EXEC,
    MODE_FILE,
    MODE_LINK,
    MODE_TREE,
    TREE,
    TYPE_NAMES,
    object_id,
    parse_tree,
)

if TYPE_CHECKING:
    from dulwich.objects import ObjectID

    from layerctl.store.repo import Store

_ENTRY_MODES = (MODE_TREE, MODE_FILE, MODE_EXEC, MODE_LINK)
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown
_MAX_NS = 2**63
_Link = tuple[bytes, bytes, str]  # (path, hardlink target, kind), checked once all is read
MAX_DEPTH = 400  # checkout recurses per directory level; PATH_MAX bounds real trees anyway
_MAX_PATH = 4095
_XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.", b"system.")
_XATTR_NAME_MAX, _XATTR_SIZE_MAX = 255, 65536  # Linux's limits
_SIZE = re.compile(r"[0-9]{1,20}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def bad_name(name: bytes) -> str | None:
    """Why `name` cannot be a directory entry (None: it can)."""
    if not name:
        return "empty name"
    if name in (b".", b".."):
        return f"name {name.decode()!r}"
    if b"/" in name:
        return "name contains '/'"
    if b"\0" in name:
        return "name contains NUL"
    return None


def bad_relative_path(path: bytes) -> str | None:
    """Why `path` (a `link=` target) is not a plain relative path inside a layer."""
    if path.startswith(b"/"):
        return "absolute path"
    if len(path) > _MAX_PATH:
        return "path too long"
    for part in path.split(b"/"):
        problem = bad_name(part)
        if problem:
            return problem
    return None


def show(path: bytes) -> str:
    return "/" + path.decode("utf-8", "backslashreplace")


def meta_problem(meta: Meta, is_dir: bool) -> str | None:
    """Why a record line is not sane (None: it is)."""
    if (meta.kind == DIR) != is_dir:
        return f"record says type {meta.kind!r}, the tree says {'directory' if is_dir else 'not'}"
    if not 0 <= meta.mode <= 0o7777:
        return f"mode {meta.mode:o} out of range"
    if not (0 <= meta.uid <= _MAX_ID and 0 <= meta.gid <= _MAX_ID):
        return f"owner {meta.uid}:{meta.gid} out of range"
    if not -_MAX_NS <= meta.mtime_ns < _MAX_NS:
        return "mtime out of range"
    if meta.size < 0 or (meta.size and meta.kind != FILE):
        return f"size {meta.size} on a {meta.kind!r} entry"
    if (meta.rdev is not None) != (meta.kind in DEVICE_KINDS):
        return "rdev on a non-device" if meta.rdev is not None else "device without rdev"
    if meta.rdev is not None and not all(0 <= n < 2**32 for n in meta.rdev):
        return f"rdev {meta.rdev} out of range"
    names = [name for name, _ in meta.xattrs]
    if len(set(names)) != len(names):
        return "duplicate xattr"
    for name, value in meta.xattrs:
        if (b"\0" in name or not name.startswith(_XATTR_NAMESPACES) or name.endswith(b".")
                or len(name) > _XATTR_NAME_MAX):  # fmt: skip
            return f"xattr name {name[:80]!r}"
        if len(value) > _XATTR_SIZE_MAX:
            return f"xattr {name!r}: value of {len(value)} bytes"
    if meta.link is not None:
        if is_dir:
            return "link= on a directory"
        problem = bad_relative_path(meta.link)
        if problem:
            return f"link={meta.link!r}: {problem}"
    return None


class Validator:
    """Checks layers; `problems` collects one line per problem found.

    `trusted`: layer ids known good (stop there). `verify_hashes`: also rehash
    every object (fsck; objects dulwich indexed from a fetched pack are hashed
    by the indexing already).
    """

    def __init__(
        self, store: Store, trusted: Iterable[str] = (), verify_hashes: bool = False
    ) -> None:
        self.store = store
        self.trusted = set(trusted)
        self.verify_hashes = verify_hashes
        self.problems: list[str] = []
        self.objects = 0
        self._layers: dict[str, bool] = {}  # layer id -> passed
        self._dirs: dict[tuple[bytes, bytes, bytes], list[_Link] | None] = {}  # links below
        self._blobs: dict[bytes, int | None] = {}  # blob id -> size (None: unreadable)
        self._unfit: set[bytes] = set()  # blobs that cannot be a symlink's target

    # -- objects ------------------------------------------------------------

    def _problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def _read(self, sha: bytes, expect: int, where: str) -> bytes | None:
        try:
            type_num, data = self.store.objects.get_raw(cast("ObjectID", sha.hex().encode()))
        except KeyError:
            self._problem(where, f"object {sha.hex()} is missing")
            return None
        except Exception as e:  # a damaged pack surfaces as many exception types
            self._problem(where, f"object {sha.hex()} cannot be read: {e}")
            return None
        self.objects += 1
        if type_num != expect:
            self._problem(where, f"object {sha.hex()} is not a {TYPE_NAMES[expect].decode()}")
            return None
        if self.verify_hashes:
            real = object_id(type_num, data)
            if real != sha:
                self._problem(where, f"object {sha.hex()} is corrupt (hashes to {real.hex()})")
                return None
        return data

    def _tree(self, sha: bytes, where: str) -> list[tuple[bytes, bytes, bytes]] | None:
        data = self._read(sha, TREE, where)
        if data is None:
            return None
        try:
            entries = parse_tree(data)
        except ValueError:
            entries = None
        if entries is None or any(len(s) != 20 for _n, _m, s in entries):
            self._problem(where, f"tree {sha.hex()} is malformed")
            return None
        return entries

    def _blob_size(self, sha: bytes, where: str) -> int | None:
        """The blob's size; -1 for a symlink-unfit one (holds NUL or is too long)."""
        if sha not in self._blobs:
            data = self._read(sha, BLOB, where)
            self._blobs[sha] = None if data is None else len(data)
            if data is not None and (b"\0" in data[:_MAX_PATH + 1] or len(data) > _MAX_PATH):
                self._unfit.add(sha)
        return self._blobs[sha]

    # -- layers -------------------------------------------------------------

    def check_layer(self, layer_id: str, where: str) -> bool:
        """Check `layer_id` and its parents down to a trusted one; True if all pass."""
        chain = []
        current: str | None = layer_id
        while current and current not in self.trusted and current not in self._layers:
            self._layers[current] = False  # a parent cycle cannot loop
            passed, parent = self._check_commit(current, where)
            chain.append((current, passed))
            if not passed:
                break
            current = parent
        # a layer is good only when everything below it is
        ok = not current or self._layers.get(current, True)
        for layer, passed in reversed(chain):
            ok = ok and passed
            self._layers[layer] = ok
        return ok

    def _check_commit(self, layer_id: str, where: str) -> tuple[bool, str | None]:
        from dulwich.objects import Commit

        before = len(self.problems)
        here = f"{where}: layer {layer_id[:12]}"
        try:
            sha = bytes.fromhex(layer_id)
        except ValueError:
            sha = b""
        if len(sha) != 20:
            self._problem(where, f"{layer_id!r} is not an object id")
            return False, None
        raw = self._read(sha, COMMIT, where)
        if raw is None:
            return False, None
        try:
            commit = Commit.from_raw_string(COMMIT, raw)
            assert isinstance(commit, Commit)
            tree_id = bytes.fromhex(commit.tree.decode())
            parents = [p.decode() for p in commit.parents]
        except Exception as e:  # dulwich raises several types on a malformed commit
            self._problem(here, f"malformed commit ({e})")
            return False, None
        if len(parents) > 1:
            self._problem(here, "a layer has at most one parent")
            return False, None
        top = self._tree(tree_id, here)
        if top is None:
            return False, None
        entries = {name: (mode, s) for name, mode, s in top}
        shape = {b"config.json": MODE_FILE, b"meta": MODE_TREE, b"rootfs": MODE_TREE}
        if SOURCE in entries:
            shape[SOURCE] = MODE_TREE
        if len(top) != len(shape) or {n: m for n, (m, _s) in entries.items()} != shape:
            names = ", ".join(sorted(n.decode("utf-8", "replace") for n in entries))
            self._problem(here, f"not a layer: its tree holds {names or 'nothing'}, "
                          "not exactly config.json, meta/, rootfs/ (and source/)")  # fmt: skip
            return False, None
        if SOURCE in entries:
            self._check_source(entries[SOURCE][1], here)
        config = self._read(entries[b"config.json"][1], BLOB, here)
        if config is not None:
            try:
                parsed = json.loads(config)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                self._problem(here, "config.json is not a JSON object")
        _message, trailers = split_trailers(commit.message.decode("utf-8", "replace"))
        for key, value in trailers.items():
            pattern = _SIZE if key == "Size" else _DIGEST if "DiffID" in key else None
            if pattern is not None and not pattern.fullmatch(value):
                self._problem(here, f"trailer {key}: {value[:80]!r}")
        root = DirRef(entries[b"rootfs"][1], entries[b"meta"][1])
        links = self._check_dir(root, b"", here, 0)
        if links:
            self._check_links(root, links, here)
        return len(self.problems) == before, (parents[0] if parents else None)

    def _check_source(self, tree_id: bytes, here: str) -> None:
        """source/ holds only the known blobs (their content is checked where used:
        a tar-split record by the DiffID of the tar it gives, `fsck` runs that)."""
        tree = self._tree(tree_id, here)
        for name, mode, sha in tree or ():
            if name not in SOURCE_NAMES or mode != MODE_FILE:
                self._problem(here, f"unexpected entry {name!r} in source/")
            else:
                self._read(sha, BLOB, here)

    def _check_dir(self, ref: DirRef, path: bytes, where: str, depth: int) -> list[_Link] | None:
        """Check one directory and everything below; returns its (path, target, kind)
        hardlinks (checked against the whole layer later), None if it failed."""
        key = (path, ref.rootfs, ref.meta)
        if key in self._dirs:
            return self._dirs[key]
        self._dirs[key] = None
        here = f"{where} {show(path)}"
        if depth > MAX_DEPTH or len(path) > _MAX_PATH:
            self._problem(here, "directory nested too deep")
            return None
        rootfs = self._tree(ref.rootfs, here)
        meta_tree = self._tree(ref.meta, here)
        if rootfs is None or meta_tree is None:
            return None
        before = len(self.problems)
        record_id = None
        meta_dirs: dict[bytes, bytes] = {}
        for name, mode, sha in meta_tree:
            if name == RECORD and mode == MODE_FILE and record_id is None:
                record_id = sha
            elif mode == MODE_TREE and name != RECORD and name not in meta_dirs:
                meta_dirs[name] = sha
            else:
                self._problem(here, f"unexpected entry {name!r} in the metadata tree")
        if record_id is None:
            self._problem(here, "metadata record missing")
            return None
        record = self._read(record_id, BLOB, here)
        if record is None:
            return None
        try:
            own, metas = parse_record(record)
            lines = record.count(b"\n") + (not record.endswith(b"\n"))
        except (ValueError, UnicodeDecodeError) as e:
            self._problem(here, f"metadata record {record_id.hex()} is malformed: {e}")
            return None
        if lines != len(metas) + 1:
            self._problem(here, "metadata record has duplicate lines")
        problem = meta_problem(own, True)
        if problem:
            self._problem(here, problem)
        links: list[_Link] = []
        seen: set[bytes] = set()
        subdirs = []
        for name, mode, sha in rootfs:
            try:
                real = unmangle(name)
            except ValueError:
                self._problem(here, f"entry {name!r}: undecodable name")
                continue
            problem = bad_name(real)
            if problem is None and mangle(real) != name:
                problem = f"entry {name!r} is not in canonical form"
            if problem is None and real in seen:
                problem = f"entry {name!r} appears twice"
            if problem:
                self._problem(here, problem)
                meta_dirs.pop(name, None)  # one line per bad entry is enough
                continue
            seen.add(real)
            child = path + b"/" + real if path else real
            if mode == MODE_TREE:
                if name not in meta_dirs:
                    self._problem(f"{where} {show(child)}", "directory has no metadata")
                    continue
                subdirs.append((child, DirRef(sha, meta_dirs.pop(name))))
                continue
            self._check_entry(child, mode, sha, metas.pop(real, None), where, links)
        for name in metas:
            self._problem(here, f"metadata for missing entry {name!r}")
        for name in meta_dirs:
            self._problem(here, f"metadata tree for missing directory {name!r}")
        failed = False
        for child, sub in subdirs:  # walk order: sorted names, subdirs in place
            below = self._check_dir(sub, child, where, depth + 1)
            failed = failed or below is None
            links.extend(below or ())
        if failed or len(self.problems) != before:
            return None
        self._dirs[key] = links
        return links

    def _check_entry(
        self, path: bytes, mode: bytes, sha: bytes, meta: Meta | None, where: str,
        links: list[_Link],
    ) -> None:
        here = f"{where} {show(path)}"
        if mode not in _ENTRY_MODES:
            self._problem(here, f"tree entry mode {mode.decode('ascii', 'replace')}")
            return
        if meta is None:
            self._problem(here, "entry has no metadata")
            return
        problem = meta_problem(meta, False)
        if problem is None and git_mode(meta) != mode:
            problem = f"record type {meta.kind!r} disagrees with tree mode {mode.decode()}"
        if problem:
            self._problem(here, problem)
            return
        if meta.link is not None:
            if meta.link.split(b"/") >= path.split(b"/"):
                self._problem(here, f"link={show(meta.link)} is not an earlier entry")
                return
            links.append((path, meta.link, meta.kind))
        if meta.kind in (FILE, SYMLINK):
            size = self._blob_size(sha, here)
            if size is None:
                return
            if meta.kind == FILE and size != meta.size:
                self._problem(here, f"record says size={meta.size}, the blob holds {size}")
            elif meta.kind == SYMLINK and (not size or sha in self._unfit):
                self._problem(here, f"symlink target of {size} bytes (or holding NUL)")
        elif sha != EMPTY_BLOB:
            self._problem(here, f"a {meta.kind!r} entry with content")

    def _check_links(self, root: DirRef, links: list[_Link], where: str) -> None:
        for path, target, kind in links:
            here = f"{where} {show(path)}"
            try:
                found = lookup(self.store, root, target)
            except Exception:  # the layer's other problems are reported already
                found = None
            if found is None or isinstance(found[1], DirRef):
                self._problem(here, f"link={show(target)} is not a file of this layer")
            elif found[0].link is not None or found[0].kind != kind:
                self._problem(here, f"link={show(target)} is not the first of its group")
