"""The one pass that applies a tar onto a TreeEditor (`Applier`), each rule of apply.py's
docstring next to the code it guards: names and metadata are checked by tarentry.py,
the stream is read by tarread.py, what the tar added is kept as addedtree.py's tree.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

from layerctl.changeset import addedtree
from layerctl.changeset.addedtree import Inode, Node
from layerctl.changeset.tarentry import (
    IGNORED,
    OPAQUE,
    WH,
    WHITEOUT,
    entry_meta,
    entry_path,
    join,
    link_target,
    show,
    split,
    whiteout_name,
)
from layerctl.changeset.tarread import (
    Counted,
    EmptyHeader,
    EOFHeader,
    Limits,
    Overflow,
    Readable,
    TarFormat,
    TarReader,
    guarded_info,
    member_stream,
)
from layerctl.changeset.tarsplit import TarRecorder
from layerctl.compress.detect import CorruptStream
from layerctl.errors import BadInput
from layerctl.store import debris
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import EMPTY_BLOB, DirRef
from layerctl.store.meta import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK, Meta
from layerctl.store.objects import BIG_FILE, BLOB, PackWriter

if TYPE_CHECKING:
    from layerctl.changeset.dirmirror import DirMirror

__all__ = ["IMPLICIT_DIR", "Applier", "ApplyStats"]

IMPLICIT_DIR = Meta(DIR, 0o755)  # a parent the tar does not list, as tar creates it
_SPOOL_CHUNK = 1 << 20
_PLAIN_FILE = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)  # content as it is
_SPECIAL_TYPES = {tarfile.CHRTYPE: CHAR, tarfile.BLKTYPE: BLOCK, tarfile.FIFOTYPE: FIFO}


@dataclass
class ApplyStats:
    """What a tar contained."""

    entries: int = 0  # tar members, all kinds
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    specials: int = 0  # devices and fifos
    whiteouts: int = 0
    opaques: int = 0
    ignored: int = 0  # AUFS metadata entries
    bytes: int = 0  # content of regular files (a hardlink group counts once)
    tar_bytes: int = 0  # uncompressed tar stream read


# where a file's entry is in the editor: its directory's files, its name, the entry
_Slot: TypeAlias = "tuple[dict[bytes, tuple[Meta, bytes]], bytes, tuple[Meta, bytes]]"


class Applier:
    def __init__(
        self, editor: TreeEditor, writer: PackWriter, whiteouts: bool, limits: Limits,
        keep_bytes: int = 0, recorder: TarRecorder | None = None,
        mirror: DirMirror | None = None,
    ) -> None:
        self.recorder = recorder  # tarsplit: keeps all but file contents of the tar read
        self.mirror = mirror  # a base layer's dir, written as entries are accepted
        self.editor = editor
        self.writer = writer
        self.whiteouts = whiteouts
        self.limits = limits
        self.stats = ApplyStats()
        self.lower = self._snapshot()
        self.tree = Node(explicit=False)  # the paths this tar added
        self.dirs_ok: set[bytes] = set()  # paths known to be directories right now
        self.lower_changed = False  # a lower entry was replaced, deleted or hardlinked
        self.lower_inodes: dict[bytes, Inode] = {}
        self.groups: list[Inode] = []  # inodes that got hardlinks in this tar
        self.current = ""  # the entry being applied, for messages
        self.current_done = False  # past the end-of-archive marker
        self.whited_out: set[bytes] = set()  # directories whose lower content is hidden
        self.opaque_done: set[bytes] = set()  # directories whose lower children are hidden
        self.keep_bytes = keep_bytes  # budget for file contents kept in memory
        self.kept: dict[bytes, bytes] = {}  # blob id -> content, for a DiffID pass

    def _snapshot(self) -> DirRef | None:
        """The tree before the tar, for finding the lower tree's hardlink groups."""
        root = self.editor.root
        if root.ref is not None:
            return root.ref
        if not self.editor.children(b""):
            return None
        return self.editor.write(self.writer)  # an editor with unwritten edits

    # -- the tar ------------------------------------------------------------

    def run(self, stream: BinaryIO) -> ApplyStats:
        counted = Counted(stream, self.limits.max_total_bytes)
        try:
            reader = TarReader(counted)
            guarded = guarded_info(self.limits.max_header_bytes)
            while True:
                reader.skip_to_header()
                try:
                    info = guarded.fromtarfile(reader)  # type: ignore[arg-type]
                except EOFHeader:
                    break  # the end-of-archive marker
                except EmptyHeader:
                    if reader.offset == 0:
                        raise BadInput("not a tar archive: empty file") from None
                    break  # no end-of-archive marker: accepted
                self.current = show(info.name)
                self._entry(reader, info)
            self.current_done = True
            while counted.read(1 << 16):
                pass  # read to the end so that compressed trailers are checked
        except Overflow:
            where = (
                f"data after the end of the tar (last entry {self.current})" if self.current_done
                else f"tar entry {self.current}" if self.current else "the first tar header"
            )
            raise BadInput(
                f"{where}: the layer is larger than the limit of "
                f"{self.limits.max_total_bytes} bytes uncompressed"
            ) from None
        except CorruptStream as e:
            where = f"in tar entry {self.current}" if self.current else "before the first entry"
            raise BadInput(f"{e} ({where})") from None
        except TarFormat as e:
            if not self.current:
                raise BadInput(f"not a tar archive: {e}") from None
            raise BadInput(f"corrupt tar after tar entry {self.current}: {e}") from None
        except (tarfile.TarError, EOFError) as e:
            where = f"in tar entry {self.current}" if self.current else "at the start"
            raise BadInput(f"truncated or corrupt tar {where}: {e}") from None
        self.stats.tar_bytes = counted.count
        self.writer.drain()
        self._fix_links()
        if self.mirror is not None:
            self.mirror.close([(p, self.editor.own(p)) for p in addedtree.dirs(self.tree)])
        return self.stats

    def _fail(self, problem: str) -> BadInput:
        return BadInput(f"tar entry {self.current}: {problem}")

    def _path(self, name: str, what: str = "path") -> bytes:
        return entry_path(name, what, self.limits, self._fail)

    def _entry(self, tar: TarReader, info: tarfile.TarInfo) -> None:
        stats = self.stats
        stats.entries += 1
        if stats.entries > self.limits.max_entries:
            raise self._fail(f"more than {self.limits.max_entries} entries")
        path = self._path(info.name)
        parent, base = split(path)
        if WH in path and self._special_name(path, parent, base):
            return
        if info.isreg():
            self._file(tar, info, path)
        elif info.isdir():
            self._dir(info, path)
        elif info.issym():
            self._symlink(info, path)
        elif info.islnk():
            self._hardlink(info, path)
        elif info.type in _SPECIAL_TYPES:
            self._special(info, path, _SPECIAL_TYPES[info.type])
        else:
            raise self._fail(f"unsupported tar entry type {info.type!r}")

    def _special_name(self, path: bytes, parent: bytes, base: bytes) -> bool:
        """Handle whiteouts and AUFS metadata; True when the entry is consumed."""
        kind, target = whiteout_name(path, parent, base, self.whiteouts, self._fail)
        if kind == OPAQUE:
            self.stats.opaques += 1
            self._opaque(target)
        elif kind == WHITEOUT:
            self.stats.whiteouts += 1
            self._whiteout(target)
        elif kind == IGNORED:
            self.stats.ignored += 1
        return kind is not None

    # -- checks -------------------------------------------------------------

    def _parents(self, path: bytes, create: bool, what: str = "") -> bool:
        """Check that the parents of `path` are directories; create missing ones.

        With create=False, returns False when one is missing.
        """
        parent = split(path)[0]
        if not parent or parent in self.dirs_ok:
            return True
        parts = parent.split(b"/")
        for i in range(1, len(parts) + 1):
            prefix = b"/".join(parts[:i])
            if prefix in self.dirs_ok:
                continue
            found = self.editor.get(prefix)
            if found is None:
                if not create:
                    return False
                self.editor.set_dir(prefix, IMPLICIT_DIR)
            elif found[0].kind == SYMLINK:
                raise self._fail(
                    f"{what}parent {show(prefix)} is a symlink; entries are never written "
                    "through symlinks"
                )
            elif found[0].kind != DIR:
                raise self._fail(f"{what}parent {show(prefix)} is not a directory")
            self.dirs_ok.add(prefix)
        return True

    # -- entries ------------------------------------------------------------

    def _put_nondir(self, path: bytes, inode: Inode) -> tuple[Node, _Slot]:
        """A non-directory lands on `path` (bookkeeping for what it replaces); returns
        its node and where its entry is (for its blob id, once known)."""
        if not path:
            raise self._fail("a non-directory cannot replace the root directory")
        found, files, name, entry = self.editor.put_file(path, inode.meta,
                                                         inode.blob or EMPTY_BLOB)
        if found is not None:
            self._unmirrored()
            if found[0].kind == DIR:
                self.dirs_ok.clear()  # directories below it go away
                self.lower_changed = True
            elif addedtree.find(self.tree, path) is None:
                self.lower_changed = True
        node = Node(inode)
        addedtree.put(self.tree, path, node)
        return node, (files, name, entry)

    def _file(self, tar: TarReader, info: tarfile.TarInfo, path: bytes) -> None:
        size = info.size
        if size > self.limits.max_file_size:
            raise self._fail(
                f"file of {size} bytes exceeds the limit of {self.limits.max_file_size}"
            )
        if self.stats.bytes + size > self.limits.max_total_bytes:
            raise self._fail(
                f"the layer's content exceeds the limit of {self.limits.max_total_bytes} bytes"
            )
        self._parents(path, create=True)
        inode = Inode(entry_meta(info, FILE, self._fail), None)
        _node, (files, name, entry) = self._put_nondir(path, inode)
        self.stats.files += 1
        self.stats.bytes += size

        recorder = self.recorder
        index = -1
        if recorder is not None and info.type in _PLAIN_FILE and info.sparse is None:
            index = recorder.content(info.offset_data, size)

        def done(sha: bytes) -> None:  # one call per file when its blob id is known
            inode.blob = sha
            if recorder is not None and index >= 0:
                recorder.resolve(index, sha)
            if files.get(name) is entry:  # nothing replaced it since
                files[name] = (inode.meta, sha)

        if size > BIG_FILE:
            self._spool(member_stream(tar, info), size, done, path, inode.meta)
            return
        data = tar.read(size) if info.sparse is None else member_stream(tar, info).read(size)
        if len(data) != size:
            raise self._fail(f"truncated tar: {size} bytes declared, {len(data)} present")
        if self.mirror is not None:
            self.mirror.file(path, inode.meta, data)
        if self.keep_bytes >= size:
            self.keep_bytes -= size

            def done_and_keep(sha: bytes) -> None:
                self.kept[sha] = data
                done(sha)

            self.writer.add_blob_async(data, done_and_keep)
        else:
            self.writer.add_blob_async(data, done)

    def _spool(self, fileobj: Readable, size: int, done: Callable[[bytes], None], path: bytes,
               meta: Meta) -> None:
        """Big files go through a temporary file in the store's pack directory."""
        if self.mirror is not None:
            self.mirror.begin(path, meta)
        fd, tmp = tempfile.mkstemp(prefix=debris.temp_prefix("spool"), dir=self.writer.pack_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                left = size
                while left:
                    chunk = fileobj.read(min(left, _SPOOL_CHUNK))
                    if not chunk:
                        raise self._fail(
                            f"truncated tar: {size} bytes declared, {size - left} present"
                        )
                    out.write(chunk)
                    if self.mirror is not None:
                        self.mirror.chunk(chunk)
                    left -= len(chunk)
            if self.mirror is not None:
                self.mirror.end()
            self.writer.add_file(os.fsencode(tmp), size, done)  # synchronous above BIG_FILE
        finally:
            os.unlink(tmp)

    def _dir(self, info: tarfile.TarInfo, path: bytes) -> None:
        meta = entry_meta(info, DIR, self._fail)
        self.stats.dirs += 1
        if not path:
            self.editor.set_dir(b"", meta)
            self.tree.explicit = True
            return
        self._parents(path, create=True)
        found = self.editor.get(path)
        if found is not None and found[0].kind != DIR:
            self._unmirrored()
            if addedtree.find(self.tree, path) is None:
                self.lower_changed = True
        elif self.mirror is not None:
            self.mirror.dir(path)
        self.editor.set_dir(path, meta)
        node = addedtree.find(self.tree, path)
        if node is not None and node.kids is not None:
            node.explicit = True
        else:
            addedtree.put(self.tree, path, Node())
        self.dirs_ok.add(path)

    def _symlink(self, info: tarfile.TarInfo, path: bytes) -> None:
        target = link_target(info.linkname, "symlink target", self.limits, self._fail)
        self._parents(path, create=True)
        blob = self.writer.add(BLOB, target)
        meta = entry_meta(info, SYMLINK, self._fail)
        self._put_nondir(path, Inode(meta, blob))
        if self.mirror is not None:
            self.mirror.symlink(path, meta, target)
        self.stats.symlinks += 1

    def _special(self, info: tarfile.TarInfo, path: bytes, kind: str) -> None:
        self._parents(path, create=True)
        if not self.stats.specials:
            self.writer.add(BLOB, b"")  # devices and fifos refer to the empty blob
        meta = entry_meta(info, kind, self._fail)
        self._put_nondir(path, Inode(meta, EMPTY_BLOB))
        if self.mirror is not None:
            self.mirror.node(path, meta)
        self.stats.specials += 1

    def _hardlink(self, info: tarfile.TarInfo, path: bytes) -> None:
        target = self._path(info.linkname, "hardlink target")
        shown = show(target)
        if not target:
            raise self._fail("hardlink to the root directory")
        if any(p.startswith(WH) for p in target.split(b"/")):
            raise self._fail(f"hardlink target {shown} is a whiteout name")
        if not self._parents(target, create=False, what=f"hardlink target {shown}: "):
            raise self._fail(f"hardlink target {shown} does not exist")
        self.stats.hardlinks += 1
        node = addedtree.find(self.tree, target)
        if node is not None:
            if node.inode is None:
                raise self._fail(f"hardlink target {shown} is a directory")
            inode = node.inode
        else:
            found = self.editor.get(target)
            if found is None:
                raise self._fail(
                    f"hardlink target {shown} does not exist (a hardlink must follow its target)"
                )
            meta, blob = found
            if meta.kind == DIR:
                raise self._fail(f"hardlink target {shown} is a directory")
            key = meta.link if meta.link is not None else target
            known = self.lower_inodes.get(key)
            if known is None:
                known = self.lower_inodes[key] = Inode(meta.without_link(), blob, key)
            inode = known
            self.lower_changed = True
            self._unmirrored()
        if target == path:
            return  # GNU tar stores a file listed twice as a link to itself
        self._parents(path, create=True)
        self._put_nondir(path, inode)
        if self.mirror is not None:
            self.mirror.link(target, path)
        if not inode.paths:
            self.groups.append(inode)
            if inode.lower_key is None:
                inode.paths.append(target)
        inode.paths.append(path)

    # -- whiteouts ----------------------------------------------------------

    def _whiteout(self, path: bytes) -> None:
        """`.wh.NAME`: NAME leaves the lower tree; what this tar adds there stays."""
        self._unmirrored()
        if not self._parents(path, create=False):
            return
        node = addedtree.find(self.tree, path)
        if node is None:
            if self.editor.delete(path):
                self.lower_changed = True
                self.dirs_ok.clear()
        elif node.kids is not None:
            self._hide_lower(path, node, reset=True)
        # a non-directory from this tar already replaced the lower entry

    def _opaque(self, path: bytes) -> None:
        """`DIR/.wh..wh..opq`: every lower child of DIR is hidden."""
        self._unmirrored()
        if path:
            self._parents(path, create=True)
            found = self.editor.get(path)
            if found is None:
                self.editor.set_dir(path, IMPLICIT_DIR)
            elif found[0].kind == SYMLINK:
                raise self._fail(f"opaque marker in {show(path)}, which is a symlink")
            elif found[0].kind != DIR:
                raise self._fail(f"opaque marker in {show(path)}, which is not a directory")
            node = addedtree.find(self.tree, path)
            if node is None or node.kids is None:
                node = Node(explicit=False)
                addedtree.put(self.tree, path, node)
        else:
            node = self.tree
        self._hide_lower(path, node, reset=False)

    def _hide_lower(self, path: bytes, node: Node, reset: bool) -> None:
        """Delete what is below `path` except this tar's entries; directories kept only
        as parents of this tar's entries lose their lower metadata. `reset`: `path`
        itself is whited out (not just its children, as for an opaque marker)."""
        if self._hidden_already(path, reset):
            return
        stack = [(path, node, reset)]
        while stack:
            top, top_node, top_reset = stack.pop()
            if top_reset and not top_node.explicit:
                self.editor.set_dir(top, IMPLICIT_DIR)
            kids = top_node.kids
            assert kids is not None  # only directories are stacked
            for name in self.editor.children(top):
                child = kids.get(name)
                child_path = join(top, name)
                if child is None:
                    self.editor.delete(child_path)
                    self.lower_changed = True
                    self.dirs_ok.clear()
                elif child.kids is not None:
                    stack.append((child_path, child, True))
        (self.whited_out if reset else self.opaque_done).add(path)

    def _hidden_already(self, path: bytes, whiteout: bool) -> bool:
        """True when an earlier whiteout or opaque marker already hid what this one would
        (the lower tree cannot come back), so that repeating one costs nothing."""
        if path in self.whited_out or (not whiteout and path in self.opaque_done):
            return True
        while path:
            path = split(path)[0]
            if path in self.whited_out or path in self.opaque_done:
                return True
        return False

    def _unmirrored(self) -> None:
        """The tar replaces or hides an entry: its dir comes from the changeset."""
        if self.mirror is not None:
            self.mirror.stop()
            self.mirror = None

    # -- hardlink groups ----------------------------------------------------------

    def _fix_links(self) -> None:
        """Rewrite every hardlink group this tar touched in canonical form."""
        lower = self.lower if self.lower_changed else None
        addedtree.fix_links(self.editor, self.tree, self.groups, lower, self.lower_inodes)
