"""Reading layer tars: the inverse of layertar.py.

`apply_layer_tar` streams a layer changeset (OCI image-spec layer.md, Docker's
layer format) and `apply_rootfs_tar` a plain root filesystem tar onto a TreeEditor
(importer.import_tar makes the latter a base layer).

Layer tars are untrusted input. Nothing is ever written to disk: entries only
become editor entries and blobs in the caller's PackWriter, so a path cannot
escape anywhere; still, every entry that could not be extracted safely by a
real tool is refused with a BadInput naming it, and the caller aborts the
PackWriter, leaving the store as it was. The rules:

- names are bytes (UTF-8 where valid, any other byte kept via surrogateescape);
  `./` prefixes and empty components are dropped; a `..` component, an
  absolute name (`/x`), a NUL byte, or a name longer than the limit is refused.
  Absolute names are refused rather than made relative: no tool that writes
  layers emits them, and refusing keeps one meaning per name;
- an entry whose parent is a symlink is refused (layers are snapshots: a
  well-formed tar never writes through a symlink), and so is an entry whose
  parent is another non-directory; missing parents are created (0755, root,
  mtime 0) as tar does;
- a later entry for the same path wins: a file replaces a directory with
  everything below it, a directory replaces a file, a directory entry for an
  existing directory only sets its metadata;
- the root directory's own metadata changes only with an explicit `./` entry
  (layerctl's changesets never carry one: diff() starts below the root);
- hardlinks need an existing non-directory target (in this tar, earlier, or in
  the lower tree); members of a hardlink group share the inode's metadata (a
  hardlink entry's own header is ignored, as on disk), and every group
  touched is rewritten in the store's canonical form (see
  snapshot.DirImporter): the first member in walk order has link=None, the
  others link=<first>; a name given a new inode leaves its group;
- whiteouts (`.wh.NAME`, `.wh..wh..opq`) remove entries of the lower tree
  only, never what the same tar adds, whatever the order of the entries;
  other `.wh..wh.*` names (AUFS metadata) are ignored, as Docker does. With
  whiteouts=False (a root filesystem) any `.wh.` name is an error: a real
  file of that name cannot be told apart from a whiteout in this format;
- sizes, entry counts, path lengths and depths, and extended header sizes are
  bounded by Limits, and truncated or corrupt data (tar or compressed) is an
  error, not a short layer: a bad header after the first entry is not taken
  for the end of the archive, and the stream is read to its end so that a
  gzip/zstd trailer is checked. A missing end-of-archive marker is accepted.

Over 500 lines on purpose: every rule above is enforced in the one pass that
applies the tar (`_Applier`), and each rule is next to the code it guards.
"""

from __future__ import annotations

import base64
import os
import re
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO

from layerctl.changeset.tarsplit import TarRecorder
from layerctl.compress.detect import CorruptStream, open_decompressed
from layerctl.errors import BadInput
from layerctl.store import debris
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import EMPTY_BLOB, RECORD, DirRef, lookup
from layerctl.store.meta import (
    BLOCK,
    CHAR,
    DEVICE_KINDS,
    DIR,
    FIFO,
    FILE,
    SYMLINK,
    Meta,
    parse_record,
)
from layerctl.store.names import unmangle
from layerctl.store.objects import BIG_FILE, BLOB, PackWriter

if TYPE_CHECKING:
    from layerctl.store.types import TreeReader

__all__ = [
    "DEFAULT_LIMITS",
    "ApplyStats",
    "Limits",
    "apply_layer_tar",
    "apply_rootfs_tar",
    "open_decompressed",
]

_WH = b".wh."  # OCI image-spec layer.md whiteout prefix
_OPQ = b".wh..wh..opq"  # ... and opaque-directory marker
_AUFS_META = _WH + _WH  # .wh..wh.*: AUFS bookkeeping, not whiteouts
IMPLICIT_DIR = Meta(DIR, 0o755)  # a parent the tar does not list, as tar creates it
_SPOOL_CHUNK = 1 << 20
_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)
_PLAIN_FILE = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)  # content as it is
_SPECIAL_TYPES = {tarfile.CHRTYPE: CHAR, tarfile.BLKTYPE: BLOCK, tarfile.FIFOTYPE: FIFO}
_PAX_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]*))?")


@dataclass(frozen=True)
class Limits:
    """Bounds on untrusted input; the defaults take any real image."""

    max_total_bytes: int = 64 << 30  # uncompressed tar bytes, and file content
    max_entries: int = 10_000_000
    max_file_size: int = 64 << 30
    max_path_length: int = 4096  # bytes, for names and link targets (PATH_MAX)
    max_depth: int = 512  # path components; the store's tree code recurses per level
    max_header_bytes: int = 16 << 20  # one PAX or GNU long-name header


DEFAULT_LIMITS = Limits()


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


# -- tar reading guards ------------------------------------------------------------


class _TarFormat(Exception):
    """A malformed or truncated tar header (raised through tarfile untouched)."""


class _Overflow(Exception):
    """The stream is longer than Limits.max_total_bytes."""


class _Counted:
    """The decompressed stream as tarfile reads it, counted and bounded."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else 1 << 20)
        self.count += len(data)
        if self.count > self.limit:
            raise _Overflow()
        return data


def _member_data(tar: tarfile.TarFile, info: tarfile.TarInfo, size: int) -> bytes:
    """A regular member's content (fewer bytes if the stream ends), read in one pass
    from the stream under tarfile's stream mode: its own reader goes through 10 KiB
    reads, joins and slices, a fifth of a pull's main thread. Anything unexpected
    (a sparse member, another tarfile) takes tarfile's way."""
    stream = tar.fileobj
    if (info.sparse is not None or not isinstance(stream, tarfile._Stream)
            or getattr(stream, "comptype", None) != "tar"
            or getattr(stream, "pos", None) != info.offset_data
            or not isinstance(getattr(stream, "buf", None), bytes)):  # fmt: skip
        return tar.extractfile(info).read(size)
    buf = stream.buf
    if len(buf) >= size:
        data, stream.buf = buf[:size], buf[size:]
    else:
        parts, left = [buf], size - len(buf)
        while left:
            chunk = stream.fileobj.read(left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        data, stream.buf = b"".join(parts), b""
    stream.pos += len(data)
    return data


def _guarded_info(limits: Limits) -> type[tarfile.TarInfo]:
    class GuardedInfo(tarfile.TarInfo):
        """tarfile's TarInfo, strict about truncated or corrupt headers and huge extensions.

        tarfile's own next() treats a bad or truncated header after the first
        member as the end of the archive; here that is an error.
        """

        @classmethod
        def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
            if 0 < len(buf) < tarfile.BLOCKSIZE:
                raise _TarFormat("the archive ends in the middle of a header (truncated)")
            try:
                obj = cls.frombuf(buf, tarfile_.encoding, tarfile_.errors)
                obj.offset = tarfile_.fileobj.tell() - tarfile.BLOCKSIZE
                return obj._proc_member(tarfile_)
            except (tarfile.EOFHeaderError, tarfile.EmptyHeaderError):
                raise  # the end-of-archive marker, or the end of the data
            except tarfile.HeaderError as e:
                raise _TarFormat(f"bad header ({e})") from None

        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            if self.size < 0:
                raise _TarFormat(f"negative size in the header of {self.name!r}")
            if self.type in _HEADER_TYPES and self.size > limits.max_header_bytes:
                raise _TarFormat(
                    f"an extended header of {self.size} bytes exceeds the limit of "
                    f"{limits.max_header_bytes}"
                )
            return super()._proc_member(tarfile_)

    return GuardedInfo


def _show(name: str | bytes) -> str:
    """An entry name for messages: quoted, undecodable bytes as \\x escapes."""
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    return repr(name.decode("utf-8", "backslashreplace"))


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


def _split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.rpartition(b"/")
    return parent, name


def _walk_key(path: bytes) -> list[bytes]:
    """Walk order (parents first, names sorted by bytes) as a sort key."""
    return path.split(b"/")


def _parse_pax_time(text: str) -> int | None:
    m = _PAX_TIME.fullmatch(text.strip())
    if m is None:
        return None
    sign, whole, frac = m.groups()
    ns = int(whole) * 1_000_000_000 + int((frac or "")[:9].ljust(9, "0"))
    return -ns if sign else ns


# -- the applier -------------------------------------------------------------------


class _Inode:
    """A non-directory's content; hardlinks share one."""

    __slots__ = ("meta", "blob", "paths", "lower_key")

    def __init__(self, meta: Meta, blob: bytes | None, lower_key: bytes | None = None) -> None:
        self.meta = meta  # link is always None here
        self.blob = blob  # None while the content is being hashed
        self.paths: list[bytes] = []  # names this tar gave it (hardlink groups only)
        self.lower_key = lower_key  # the lower tree's group (its first member), if from there


class _Node:
    """What this tar put at a path: a directory (kids) or a non-directory (inode)."""

    __slots__ = ("kids", "inode", "explicit")

    def __init__(self, inode: _Inode | None = None, explicit: bool = True) -> None:
        self.kids: dict[bytes, _Node] | None = None if inode is not None else {}
        self.inode = inode
        self.explicit = explicit  # False: a parent created (or kept) for its children


class _Applier:
    def __init__(
        self, editor: TreeEditor, writer: PackWriter, whiteouts: bool, limits: Limits,
        keep_bytes: int = 0, recorder: TarRecorder | None = None,
    ) -> None:
        self.recorder = recorder  # tarsplit: keeps all but file contents of the tar read
        self.editor = editor
        self.store = editor.store
        self.writer = writer
        self.whiteouts = whiteouts
        self.limits = limits
        self.stats = ApplyStats()
        self.lower = self._snapshot()
        self.tree = _Node(explicit=False)  # the paths this tar added
        self.dirs_ok: set[bytes] = set()  # paths known to be directories right now
        self.lower_changed = False  # a lower entry was replaced, deleted or hardlinked
        self.lower_inodes: dict[bytes, _Inode] = {}
        self.groups: list[_Inode] = []  # inodes that got hardlinks in this tar
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
        counted = _Counted(stream, self.limits.max_total_bytes)
        try:
            try:
                tar = tarfile.open(
                    fileobj=counted, mode="r|", encoding="utf-8", errors="surrogateescape",
                    tarinfo=_guarded_info(self.limits),
                )
            except tarfile.ReadError as e:
                raise BadInput(f"not a tar archive: {e}") from None
            while True:
                info = tar.next()
                if info is None:
                    break
                tar.members.clear()  # stream mode would keep every member otherwise
                self.current = _show(info.name)
                self._entry(tar, info)
            self.current_done = True
            while counted.read(1 << 16):
                pass  # read to the end so that compressed trailers are checked
        except _Overflow:
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
        except _TarFormat as e:
            if not self.current:
                raise BadInput(f"not a tar archive: {e}") from None
            raise BadInput(f"corrupt tar after tar entry {self.current}: {e}") from None
        except (tarfile.TarError, EOFError) as e:
            where = f"in tar entry {self.current}" if self.current else "at the start"
            raise BadInput(f"truncated or corrupt tar {where}: {e}") from None
        self.stats.tar_bytes = counted.count
        self.writer.drain()
        self._fix_links()
        return self.stats

    def _fail(self, problem: str) -> BadInput:
        return BadInput(f"tar entry {self.current}: {problem}")

    def _path(self, name: str, what: str = "path") -> bytes:
        try:
            raw = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise self._fail(f"{what} is not encodable") from None
        self._check_bytes(raw, what)
        if raw.startswith(b"/"):
            raise self._fail(f"absolute {what} {_show(raw)} (layer paths are relative)")
        parts = [p for p in raw.split(b"/") if p and p != b"."]
        if b".." in parts:
            raise self._fail(f"{what} {_show(raw)} contains '..' (it would leave the root)")
        if len(parts) > self.limits.max_depth:
            raise self._fail(f"{what} is deeper than {self.limits.max_depth} directories")
        return b"/".join(parts)

    def _entry(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        stats = self.stats
        stats.entries += 1
        if stats.entries > self.limits.max_entries:
            raise self._fail(f"more than {self.limits.max_entries} entries")
        path = self._path(info.name)
        parent, base = _split(path)
        if _WH in path and self._special_name(path, parent, base):
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
        parts = path.split(b"/")
        if not any(p.startswith(_WH) for p in parts):
            return False
        if not self.whiteouts:
            raise self._fail(
                "'.wh.' names are whiteouts, which a root filesystem tar cannot contain"
            )
        for part in parts[:-1]:
            if part.startswith(_AUFS_META):
                self.stats.ignored += 1
                return True
            if part.startswith(_WH):
                raise self._fail(f"whiteout {_show(part)} used as a directory")
        if base == _OPQ:
            self.stats.opaques += 1
            self._opaque(parent)
            return True
        if base.startswith(_AUFS_META):
            self.stats.ignored += 1
            return True
        name = base[len(_WH):]
        if name in (b"", b".", b".."):
            raise self._fail("whiteout of the directory itself or of its parent")
        self.stats.whiteouts += 1
        self._whiteout(_join(parent, name))
        return True

    # -- checks -------------------------------------------------------------

    def _parents(self, path: bytes, create: bool, what: str = "") -> bool:
        """Check that the parents of `path` are directories; create missing ones.

        With create=False, returns False when one is missing.
        """
        parent = _split(path)[0]
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
                    f"{what}parent {_show(prefix)} is a symlink; entries are never written "
                    "through symlinks"
                )
            elif found[0].kind != DIR:
                raise self._fail(f"{what}parent {_show(prefix)} is not a directory")
            self.dirs_ok.add(prefix)
        return True

    def _node(self, path: bytes) -> _Node | None:
        """What this tar put at `path`, if anything."""
        node = self.tree
        if not path:
            return node
        for part in path.split(b"/"):
            if node.kids is None:
                return None
            node = node.kids.get(part)
            if node is None:
                return None
        return node

    def _put_node(self, path: bytes, new: _Node) -> None:
        node = self.tree
        parts = path.split(b"/")
        for part in parts[:-1]:
            nxt = node.kids.get(part)
            if nxt is None or nxt.kids is None:
                nxt = node.kids[part] = _Node(explicit=False)
            node = nxt
        node.kids[parts[-1]] = new

    def _meta(self, info: tarfile.TarInfo, kind: str) -> Meta:
        pax = info.pax_headers
        text = pax.get("mtime")
        if text is not None:
            mtime_ns = _parse_pax_time(text)
            if mtime_ns is None:
                raise self._fail(f"invalid PAX mtime {text!r}")
        else:
            mtime_ns = int(info.mtime) * 1_000_000_000
        if info.uid < 0 or info.gid < 0:
            raise self._fail(f"invalid owner {info.uid}:{info.gid}")
        rdev = None
        if kind in DEVICE_KINDS:
            major = pax.get("SCHILY.devmajor", info.devmajor)
            minor = pax.get("SCHILY.devminor", info.devminor)
            try:
                rdev = (int(major), int(minor))
            except ValueError:
                raise self._fail(f"invalid device number {major},{minor}") from None
            if rdev[0] < 0 or rdev[1] < 0:
                raise self._fail(f"invalid device number {major},{minor}")
        return Meta(
            kind=kind,
            mode=info.mode & 0o7777,
            uid=info.uid,
            gid=info.gid,
            mtime_ns=mtime_ns,
            size=info.size if kind == FILE else 0,
            rdev=rdev,
            xattrs=self._xattrs(pax),
        )

    def _xattrs(self, pax: Mapping[str, str]) -> tuple[tuple[bytes, bytes], ...]:
        out: dict[bytes, bytes] = {}
        for key, value in pax.items():
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr."):].encode("utf-8", "surrogateescape")
                data = value.encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                name = urllib.parse.unquote_to_bytes(key[len("LIBARCHIVE.xattr."):])
                try:
                    data = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
                except ValueError:
                    raise self._fail(f"invalid base64 in PAX record {key!r}") from None
            else:
                continue
            if not name or b"\0" in name:
                raise self._fail(f"invalid xattr name {_show(name)}")
            out[name] = data
        return tuple(sorted(out.items()))

    # -- entries ------------------------------------------------------------

    def _replace(self, path: bytes) -> None:
        """Bookkeeping before a non-directory lands on `path`."""
        if not path:
            raise self._fail("a non-directory cannot replace the root directory")
        found = self.editor.get(path)
        if found is None:
            return
        if found[0].kind == DIR:
            self.dirs_ok.clear()  # directories below it go away
            self.lower_changed = True
        elif self._node(path) is None:
            self.lower_changed = True

    def _put_nondir(self, path: bytes, inode: _Inode) -> _Node:
        self._replace(path)
        self.editor.set_file(path, inode.meta, inode.blob or EMPTY_BLOB)
        node = _Node(inode)
        self._put_node(path, node)
        return node

    def _file(self, tar: tarfile.TarFile, info: tarfile.TarInfo, path: bytes) -> None:
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
        inode = _Inode(self._meta(info, FILE), None)
        node = self._put_nondir(path, inode)
        self.stats.files += 1
        self.stats.bytes += size

        def set_blob(sha: bytes) -> None:
            inode.blob = sha
            if self._node(path) is node:
                self.editor.set_file(path, inode.meta, sha)

        done = set_blob
        index = -1
        if self.recorder is not None and info.type in _PLAIN_FILE and info.sparse is None:
            index = self.recorder.content(info.offset_data, size)
        if index >= 0:

            def done(sha: bytes, index: int = index) -> None:
                self.recorder.resolve(index, sha)
                set_blob(sha)

        if size > BIG_FILE:
            self._spool(tar.extractfile(info), size, done)
            return
        data = _member_data(tar, info, size)
        if len(data) != size:
            raise self._fail(f"truncated tar: {size} bytes declared, {len(data)} present")
        if self.keep_bytes >= size:
            self.keep_bytes -= size

            def done_and_keep(sha: bytes) -> None:
                self.kept[sha] = data
                done(sha)

            self.writer.add_blob_async(data, done_and_keep)
        else:
            self.writer.add_blob_async(data, done)

    def _spool(self, fileobj: IO[bytes], size: int, done: Callable[[bytes], None]) -> None:
        """Big files go through a temporary file in the store's pack directory."""
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
                    left -= len(chunk)
            self.writer.add_file(os.fsencode(tmp), size, done)  # synchronous above BIG_FILE
        finally:
            os.unlink(tmp)

    def _dir(self, info: tarfile.TarInfo, path: bytes) -> None:
        meta = self._meta(info, DIR)
        self.stats.dirs += 1
        if not path:
            self.editor.set_dir(b"", meta)
            self.tree.explicit = True
            return
        self._parents(path, create=True)
        found = self.editor.get(path)
        if found is not None and found[0].kind != DIR and self._node(path) is None:
            self.lower_changed = True
        self.editor.set_dir(path, meta)
        node = self._node(path)
        if node is not None and node.kids is not None:
            node.explicit = True
        else:
            self._put_node(path, _Node())
        self.dirs_ok.add(path)

    def _symlink(self, info: tarfile.TarInfo, path: bytes) -> None:
        target = self._target_bytes(info.linkname, "symlink target")
        self._parents(path, create=True)
        blob = self.writer.add(BLOB, target)
        self._put_nondir(path, _Inode(self._meta(info, SYMLINK), blob))
        self.stats.symlinks += 1

    def _special(self, info: tarfile.TarInfo, path: bytes, kind: str) -> None:
        self._parents(path, create=True)
        if not self.stats.specials:
            self.writer.add(BLOB, b"")  # devices and fifos refer to the empty blob
        self._put_nondir(path, _Inode(self._meta(info, kind), EMPTY_BLOB))
        self.stats.specials += 1

    def _target_bytes(self, text: str, what: str) -> bytes:
        raw = text.encode("utf-8", "surrogateescape")
        self._check_bytes(raw, what)
        return raw

    def _check_bytes(self, raw: bytes, what: str) -> None:
        """What a member name and a link target must both be: not empty, no NUL, within
        the path length limit."""
        if not raw:
            raise self._fail(f"empty {what}")
        if b"\0" in raw:
            raise self._fail(f"{what} contains a NUL byte")
        if len(raw) > self.limits.max_path_length:
            raise self._fail(f"{what} is longer than {self.limits.max_path_length} bytes")

    def _hardlink(self, info: tarfile.TarInfo, path: bytes) -> None:
        target = self._path(info.linkname, "hardlink target")
        shown = _show(target)
        if not target:
            raise self._fail("hardlink to the root directory")
        if any(p.startswith(_WH) for p in target.split(b"/")):
            raise self._fail(f"hardlink target {shown} is a whiteout name")
        if not self._parents(target, create=False, what=f"hardlink target {shown}: "):
            raise self._fail(f"hardlink target {shown} does not exist")
        self.stats.hardlinks += 1
        node = self._node(target)
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
            inode = self.lower_inodes.get(key)
            if inode is None:
                inode = self.lower_inodes[key] = _Inode(meta.without_link(), blob, key)
            self.lower_changed = True
        if target == path:
            return  # GNU tar stores a file listed twice as a link to itself
        self._parents(path, create=True)
        self._put_nondir(path, inode)
        if not inode.paths:
            self.groups.append(inode)
            if inode.lower_key is None:
                inode.paths.append(target)
        inode.paths.append(path)

    # -- whiteouts ----------------------------------------------------------

    def _whiteout(self, path: bytes) -> None:
        """`.wh.NAME`: NAME leaves the lower tree; what this tar adds there stays."""
        if not self._parents(path, create=False):
            return
        node = self._node(path)
        if node is None:
            if self.editor.delete(path):
                self.lower_changed = True
                self.dirs_ok.clear()
        elif node.kids is not None:
            self._hide_lower(path, node, reset=True)
        # a non-directory from this tar already replaced the lower entry

    def _opaque(self, path: bytes) -> None:
        """`DIR/.wh..wh..opq`: every lower child of DIR is hidden."""
        if path:
            self._parents(path, create=True)
            found = self.editor.get(path)
            if found is None:
                self.editor.set_dir(path, IMPLICIT_DIR)
            elif found[0].kind == SYMLINK:
                raise self._fail(f"opaque marker in {_show(path)}, which is a symlink")
            elif found[0].kind != DIR:
                raise self._fail(f"opaque marker in {_show(path)}, which is not a directory")
            node = self._node(path)
            if node is None or node.kids is None:
                node = _Node(explicit=False)
                self._put_node(path, node)
        else:
            node = self.tree
        self._hide_lower(path, node, reset=False)

    def _hide_lower(self, path: bytes, node: _Node, reset: bool) -> None:
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
            for name in self.editor.children(top):
                child = top_node.kids.get(name)
                child_path = _join(top, name)
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
            path = _split(path)[0]
            if path in self.whited_out or path in self.opaque_done:
                return True
        return False

    # -- hardlink groups ----------------------------------------------------------

    def _lower_alive(self, path: bytes) -> bool:
        """True when the lower tree's non-directory at `path` is still there, untouched."""
        if self._node(path) is not None:
            return False
        found = self.editor.get(path)
        return found is not None and found[0].kind != DIR

    def _members(self, inode: _Inode) -> list[bytes]:
        """The names this tar gave `inode` that still hold it."""
        out = []
        for path in dict.fromkeys(inode.paths):
            node = self._node(path)
            if node is not None and node.inode is inode:
                out.append(path)
        return out

    def _canonical(self, members: list[bytes], meta: Meta, blob: bytes) -> None:
        members = sorted(set(members), key=_walk_key)
        if not members:
            return
        first = members[0]
        self.editor.set_file(first, meta, blob)
        linked = meta.replace(link=first)
        for path in members[1:]:
            self.editor.set_file(path, linked, blob)

    def _fix_links(self) -> None:
        """Rewrite every hardlink group this tar touched in canonical form."""
        for inode in self.groups:
            if inode.lower_key is None:
                self._canonical(self._members(inode), inode.meta, inode.blob)
        if not (self.lower_changed and self.lower is not None):
            return
        lower_groups = _lower_groups(self.store, self.lower)
        for key in sorted(lower_groups.keys() | self.lower_inodes.keys(), key=_walk_key):
            members = lower_groups.get(key, [key])
            alive = [p for p in members if self._lower_alive(p)]
            inode = self.lower_inodes.get(key)
            extra = self._members(inode) if inode is not None else []
            if not extra and len(alive) == len(members):
                continue  # untouched
            if inode is not None:
                meta, blob = inode.meta, inode.blob
            else:
                found = lookup(self.store, self.lower, key)
                if found is None:
                    continue  # a corrupt lower group; leave it as it was
                meta, blob = found[0].without_link(), found[1]
            self._canonical(alive + extra, meta, blob)


def _lower_groups(store: TreeReader, root: DirRef) -> dict[bytes, list[bytes]]:
    """first member -> all members, for each hardlink group of a stored tree.

    Reads only the metadata trees and records, not the rootfs trees.
    """
    links: dict[bytes, list[bytes]] = {}
    stack = [(b"", root.meta)]
    while stack:
        prefix, meta_tree = stack.pop()
        for name, _mode, sha in store.read_tree(meta_tree):
            if name == RECORD:
                _own, children = parse_record(store.read_blob(sha))
                for child, meta in children.items():
                    if meta.link is not None:
                        links.setdefault(meta.link, []).append(_join(prefix, child))
            else:
                stack.append((_join(prefix, unmangle(name)), sha))
    return {first: [first, *rest] for first, rest in links.items()}


# -- public API -------------------------------------------------------------------


def apply_rootfs_tar(
    editor: TreeEditor, writer: PackWriter, stream: BinaryIO, limits: Limits, keep_bytes: int,
) -> tuple[ApplyStats, dict[bytes, bytes]]:
    """A root filesystem tar (`.wh.` names are plain files) onto `editor`; also returns
    the file contents kept in memory (up to `keep_bytes`) for the DiffID pass."""
    applier = _Applier(editor, writer, False, limits, keep_bytes)
    return applier.run(stream), applier.kept


def apply_layer_tar(
    editor: TreeEditor,
    writer: PackWriter,
    stream: BinaryIO,
    *,
    whiteouts: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    recorder: TarRecorder | None = None,
) -> ApplyStats:
    """Apply the (decompressed) tar `stream` onto `editor`, storing content in `writer`.
    `recorder` (tarsplit), the reader `stream` itself or one it reads through, is told
    which bytes are file contents.

    With whiteouts=True it is a layer changeset (OCI whiteouts apply to what
    `editor` held before); with whiteouts=False a root filesystem, where `.wh.`
    names are errors. Raises BadInput naming the entry for anything unsafe or
    malformed; the caller then aborts `writer`. The editor is left half-applied
    after an error and must be discarded.
    """
    return _Applier(editor, writer, whiteouts, limits, recorder=recorder).run(stream)
