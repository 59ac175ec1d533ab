"""Directory -> layer trees (import, commit) and layer trees -> directory (checkout)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.beneath import Changed, XattrFilter, read_xattrs
from layerctl.changeset.tar import ROOT_DEFAULT, LayerTarWriter
from layerctl.errors import BadInput
from layerctl.store.fstree import EMPTY_BLOB, Dir, DirRef, write_dir
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta, meta_from_stat
from layerctl.store.objects import BIG_FILE, BLOB, PackWriter

if TYPE_CHECKING:
    from layerctl.changeset.tar import LayerTarWriter

Progress = Callable[[int, int], None]


class _Node:
    """A directory being imported: filled by the walk, written bottom-up."""

    __slots__ = ("dir", "subdirs")

    def __init__(self, own: Meta) -> None:
        self.dir = Dir(own)
        self.subdirs: dict[bytes, _Node] = {}


class DirImporter:
    """Turns a directory tree on disk into store trees, writing into `writer`."""

    def __init__(
        self,
        writer: PackWriter,
        progress: Progress | None = None,
        keep_xattr: XattrFilter | None = None,
        tar: LayerTarWriter | None = None,
    ) -> None:
        self.writer = writer
        self.tar = tar  # when given, also writes the tree's changeset tar (for the DiffID)
        self.progress = progress
        self.keep_xattr = keep_xattr
        self.total = 0
        self.done = 0
        self._inodes: dict[tuple[int, int], tuple[bytes, _Node, bytes, Meta]] = {}
        self._links: list[tuple[_Node, bytes, bytes]] = []

    def import_dir(self, top: str | bytes) -> DirRef:
        top_b = os.fsencode(top)
        try:
            st = os.lstat(top_b)
        except OSError as e:
            raise BadInput(f"cannot read {os.fsdecode(top_b)}: {e.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise BadInput(f"{os.fsdecode(top_b)} is not a directory")
        root = _Node(meta_from_stat(st, self._xattrs(top_b)))

        if root.dir.own != ROOT_DEFAULT:
            self._tar_entry(b".", root.dir.own)  # as changeset.write_changeset writes it
        try:
            self._scan(top_b, b"", root)
            self.writer.add(BLOB, b"")
            self.writer.drain()  # worker threads' read errors surface here
        except Changed as e:
            raise _changed(e) from None
        except OSError as e:
            raise BadInput(f"cannot import {os.fsdecode(top_b)}: {e}") from None
        self._resolve_links()
        return self._write(root)

    def _xattrs(self, path: bytes) -> tuple[tuple[bytes, bytes], ...]:
        try:
            return read_xattrs(path, self.keep_xattr)
        except OSError as e:
            raise BadInput(f"cannot read xattrs of {os.fsdecode(path)}: {e.strerror}") from None

    def _scan(self, abspath: bytes, relpath: bytes, node: _Node) -> None:
        try:
            with os.scandir(abspath) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise BadInput(f"cannot read {os.fsdecode(abspath)}: {e.strerror}") from None
        for entry in entries:
            path = entry.path
            rel = relpath + b"/" + entry.name if relpath else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise BadInput(f"cannot stat {os.fsdecode(path)}: {e.strerror}") from None
            meta = meta_from_stat(st, self._xattrs(path))
            if meta.kind == DIR:
                self._tar_entry(rel, meta)
                child = _Node(meta)
                node.subdirs[entry.name] = child
                self._scan(path, rel, child)
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self._inodes.get(key)
                if first is not None:
                    self._links.append((node, entry.name, first[0]))
                    node.dir.files[entry.name] = (meta, b"")
                    self._tar_entry(rel, first[3].replace(link=first[0]))
                    continue
                self._inodes[key] = (rel, node, entry.name, meta)
            self._add_content(path, rel, node, entry.name, meta, st)

    def _tar_entry(self, rel: bytes, meta: Meta, content: bytes | None = None) -> None:
        if self.tar is not None:
            tar = self.tar
            self.writer.then(lambda: tar.add(rel, meta, content))

    def _add_content(self, path: bytes, rel: bytes, node: _Node, name: bytes, meta: Meta,
                     st: os.stat_result) -> None:
        files = node.dir.files
        if meta.kind == FILE:
            self.total += meta.size
            tar = self.tar

            streamed = tar is not None and meta.size > BIG_FILE
            if streamed:
                # A big file reaches the tar from the one read that hashes it (after
                # add_file's drain: every earlier entry is in the tar by then).
                begun: list[bool] = []

                def tee(chunk: bytes) -> None:
                    assert tar is not None
                    if not begun:
                        tar.begin_file(rel, meta)
                        begun.append(True)
                    tar.feed(chunk)

            def done(sha: bytes, data: bytes | None) -> None:
                files[name] = (meta, sha)
                self.done += meta.size
                if streamed:
                    assert tar is not None
                    tar.end_file(meta.size)
                elif tar is not None:
                    tar.add(rel, meta, data)
                if self.progress:
                    self.progress(self.done, self.total)

            faults.point("import.before-read")
            try:
                self.writer.add_file(path, meta.size, done, with_data=True, expect=st,
                                     tee=tee if streamed else None)
            except Changed as e:
                raise _changed(e) from None
            except OSError as e:
                raise BadInput(f"cannot read {os.fsdecode(path)}: {e.strerror or e}") from None
        elif meta.kind == SYMLINK:
            target = os.readlink(path)
            files[name] = (meta, self.writer.add(BLOB, target))
            self._tar_entry(rel, meta, target)
        else:
            files[name] = (meta, EMPTY_BLOB)
            self._tar_entry(rel, meta)

    def _resolve_links(self) -> None:
        """Every later member of a hardlink group points at the first one (walk order)."""
        by_path = {rel: (node, name) for rel, node, name, _meta in self._inodes.values()}
        for node, name, first in self._links:
            first_node, first_name = by_path[first]
            first_meta, sha = first_node.dir.files[first_name]
            node.dir.files[name] = (first_meta.replace(link=first), sha)

    def _write(self, node: _Node) -> DirRef:
        for name, child in node.subdirs.items():
            node.dir.dirs[name] = self._write(child)
        return write_dir(self.writer, node.dir)


def _changed(e: Changed) -> BadInput:
    return BadInput(f"{os.fsdecode(e.path)} changed while importing; try again")
