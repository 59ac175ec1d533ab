"""Verify the store: every reachable object hashes to its id, every record parses
and agrees with its tree, every image ref points at a complete layer."""

from __future__ import annotations

import hashlib

from layerctl.store.fstree import RECORD, DirRef
from layerctl.store.meta import DIR, SYMLINK, parse_record
from layerctl.store.names import unmangle
from layerctl.store.objects import BLOB, COMMIT, MODE_LINK, MODE_TREE, TREE, parse_tree

_TYPE_NAMES = {BLOB: b"blob", TREE: b"tree", COMMIT: b"commit"}


class Checker:
    def __init__(self, store: object) -> None:
        self.store = store
        self.seen: set[bytes] = set()
        self.problems: list[str] = []
        self.objects = 0

    def _read(self, sha: bytes, expect: int, what: str) -> bytes | None:
        try:
            type_num, data = self.store.objects.get_raw(sha.hex().encode())
        except KeyError:
            self.problems.append(f"{what}: object {sha.hex()} is missing")
            return None
        except Exception as e:  # a damaged pack surfaces as many exception types
            self.problems.append(f"{what}: object {sha.hex()} cannot be read: {e}")
            return None
        self.objects += 1
        if type_num != expect:
            self.problems.append(
                f"{what}: object {sha.hex()} is not a {_TYPE_NAMES[expect].decode()}"
            )
            return None
        real = hashlib.sha1(b"%s %d\0" % (_TYPE_NAMES[type_num], len(data)) + data).digest()
        if real != sha:
            self.problems.append(f"{what}: object {sha.hex()} is corrupt (hashes to {real.hex()})")
            return None
        return data

    def check_layer(self, layer_id: str, what: str) -> None:
        from dulwich.objects import Commit

        sha = bytes.fromhex(layer_id)
        while sha and sha not in self.seen:
            self.seen.add(sha)
            raw = self._read(sha, COMMIT, what)
            if raw is None:
                return
            commit = Commit.from_raw_string(COMMIT, raw)
            top = self._read(bytes.fromhex(commit.tree.decode()), TREE, what)
            if top is None:
                return
            entries = {name: s for name, _m, s in parse_tree(top)}
            if b"rootfs" not in entries or b"meta" not in entries:
                self.problems.append(f"{what}: layer {sha.hex()[:12]} has no rootfs/meta tree")
                return
            if b"config.json" in entries:
                self._read(entries[b"config.json"], BLOB, what)
            self.check_dir(DirRef(entries[b"rootfs"], entries[b"meta"]), f"{what} /")
            sha = bytes.fromhex(commit.parents[0].decode()) if commit.parents else b""

    def check_dir(self, ref: DirRef, where: str) -> None:
        key = ref.rootfs + ref.meta
        if key in self.seen:
            return
        self.seen.add(key)
        rootfs = self._read(ref.rootfs, TREE, where)
        meta = self._read(ref.meta, TREE, where)
        if rootfs is None or meta is None:
            return
        meta_entries = {name: sha for name, _m, sha in parse_tree(meta)}
        record_id = meta_entries.pop(RECORD, None)
        if record_id is None:
            self.problems.append(f"{where}: metadata record missing")
            return
        record = self._read(record_id, BLOB, where)
        if record is None:
            return
        try:
            own, metas = parse_record(record)
        except (ValueError, UnicodeDecodeError) as e:
            self.problems.append(f"{where}: metadata record {record_id.hex()} is malformed: {e}")
            return
        for name, mode, sha in parse_tree(rootfs):
            real = unmangle(name)
            path = where.rstrip("/") + "/" + real.decode("utf-8", "backslashreplace")
            if mode == MODE_TREE:
                if name not in meta_entries:
                    self.problems.append(f"{path}: directory has no metadata")
                    continue
                self.check_dir(DirRef(sha, meta_entries.pop(name)), path)
                continue
            entry = metas.pop(real, None)
            if entry is None:
                self.problems.append(f"{path}: entry has no metadata")
            elif entry.kind == DIR or (entry.kind == SYMLINK) != (mode == MODE_LINK):
                self.problems.append(f"{path}: metadata type {entry.kind!r} disagrees with tree")
            if sha not in self.seen:
                self.seen.add(sha)
                self._read(sha, BLOB, path)
        for name in metas:
            self.problems.append(f"{where}: metadata for missing entry {name!r}")
        for name in meta_entries:
            self.problems.append(f"{where}: metadata tree for missing directory {name!r}")


def fsck(store: object) -> tuple[list[str], int]:
    """Check every ref (images, containers) and the layers below it.

    Returns (problems, number of objects checked).
    """
    checker = Checker(store)
    for ref, sha in sorted(store.refs_under("refs").items()):
        checker.check_layer(sha, ref)
    return checker.problems, checker.objects
