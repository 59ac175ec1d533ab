"""Read-only access to the files of an image archive: a tar (docker-archive,
oci-archive) or a directory (OCI layout), untrusted either way.

Paths named by an archive's own JSON (manifest.json, index.json) are checked
before use: absolute paths and `..` are refused, symlinks and hardlinks inside
a tar are followed only within the tar, and a directory's files must resolve
inside the directory. Every problem is a BadInput naming the archive and the
path.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
import tempfile
from typing import BinaryIO

from layerctl.compress.detect import NONE, detect_compression, open_decompressed
from layerctl.errors import BadInput

MAX_MEMBERS = 1_000_000  # members of an outer archive
_MAX_HOPS = 16
_COPY = 1 << 20


def clean_path(path: str) -> str | None:
    """`path` relative to the archive root without `.` and empty parts; None when it is
    absolute or has a `..` part (it could leave the archive)."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\0" in path:
        return None
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts or not parts:
        return None
    return "/".join(parts)


def _link_target(path: str) -> str | None:
    """A link target inside the archive with `..` resolved; None if it leaves the root."""
    if path.startswith("/") or "\0" in path:
        return None
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(part)
    return "/".join(out) or None


class _Slice(io.RawIOBase):
    """`size` bytes of a file descriptor from `offset`, read with pread (no shared position)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self.fd, self.pos, self.end = fd, offset, offset + size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        left = self.end - self.pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self.fd, min(n, 16 << 20), self.pos)
        if not data:
            raise BadInput("the archive ends early (truncated)")
        self.pos += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class ArchiveFS:
    """Files of an archive by relative path. Subclasses: TarFS, DirFS."""

    label: str = ""
    kind: str = ""

    def fail(self, path: str, problem: str) -> BadInput:
        return BadInput(f"{self.label}: {path}: {problem}")

    def resolve(self, path: str, what: str) -> str:
        """The checked form of a path named by the archive's JSON (`what` says by whom)."""
        clean = clean_path(path)
        if clean is None:
            raise BadInput(f"{self.label}: {what}: path {path!r} leaves the archive")
        return clean

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def open(self, path: str) -> BinaryIO:
        raise NotImplementedError

    def read(self, path: str, limit: int) -> bytes:
        """The whole file, refused if larger than `limit` bytes."""
        size = self.size(path)
        if size > limit:
            raise self.fail(path, f"{size} bytes, larger than the limit of {limit} for this file")
        with self.open(path) as f:
            data = f.read(size + 1)
        if len(data) != size:
            raise self.fail(path, "the file changed size while being read")
        return data

    def close(self) -> None:
        pass


class TarFS(ArchiveFS):
    """The regular files of a seekable tar, by normalised member name."""

    kind = "tar"

    def __init__(self, fileobj: BinaryIO, label: str) -> None:
        self.label = label
        self.file = fileobj
        self.fd = fileobj.fileno()
        self.total = os.fstat(self.fd).st_size
        self.members: dict[str, tarfile.TarInfo] = {}
        self._index()

    def _index(self) -> None:
        self.file.seek(0)
        try:
            tar = tarfile.open(
                fileobj=self.file, mode="r:", encoding="utf-8", errors="surrogateescape"
            )
        except tarfile.TarError as e:
            raise BadInput(
                f"{self.label}: not a tar archive or OCI layout directory ({e})"
            ) from None
        count = 0
        try:
            while True:
                info = tar.next()
                if info is None:
                    break
                tar.members.clear()
                count += 1
                if count > MAX_MEMBERS:
                    raise BadInput(f"{self.label}: more than {MAX_MEMBERS} members")
                name = clean_path(info.name)
                if name is not None:
                    self.members[name] = info  # a later member of the same name wins, as tar
        except tarfile.TarError as e:
            raise BadInput(f"{self.label}: corrupt or truncated tar ({e})") from None

    def _member(self, path: str) -> tarfile.TarInfo:
        seen = 0
        current = path
        while True:
            info = self.members.get(current)
            if info is None:
                if current != path:
                    raise self.fail(path, f"link to {current!r}, which is not in the archive")
                raise self.fail(path, "missing from the archive")
            if info.isreg():
                if info.issparse():
                    raise self.fail(path, "sparse tar members are not supported")
                if info.offset_data + info.size > self.total:
                    raise self.fail(path, "the archive ends inside this file (truncated)")
                return info
            if not (info.issym() or info.islnk()):
                raise self.fail(path, "not a regular file")
            seen += 1
            if seen > _MAX_HOPS:
                raise self.fail(path, "too many levels of links")
            if info.issym():
                base = current.rpartition("/")[0]
                target = info.linkname if not base else base + "/" + info.linkname
            else:
                target = info.linkname
            nxt = _link_target(target) if not info.linkname.startswith("/") else None
            if nxt is None:
                raise self.fail(path, f"link to {info.linkname!r} leaves the archive")
            current = nxt

    def exists(self, path: str) -> bool:
        return path in self.members

    def size(self, path: str) -> int:
        return self._member(path).size

    def open(self, path: str) -> BinaryIO:
        info = self._member(path)
        return io.BufferedReader(_Slice(self.fd, info.offset_data, info.size), 1 << 20)

    def close(self) -> None:
        self.file.close()


class DirFS(ArchiveFS):
    """The files of a directory (an OCI image layout), never outside it."""

    kind = "dir"

    def __init__(self, top: str) -> None:
        self.top = os.path.realpath(top)
        self.label = top

    def _real(self, path: str) -> str:
        real = os.path.realpath(os.path.join(self.top, path))
        if real != self.top and not real.startswith(self.top + os.sep):
            raise self.fail(path, "resolves outside the layout directory")
        return real

    def _stat(self, path: str) -> os.stat_result:
        try:
            st = os.stat(self._real(path))
        except FileNotFoundError:
            raise self.fail(path, "missing from the layout") from None
        except OSError as e:
            raise self.fail(path, e.strerror or str(e)) from None
        if not stat.S_ISREG(st.st_mode):
            raise self.fail(path, "not a regular file")
        return st

    def exists(self, path: str) -> bool:
        return os.path.lexists(os.path.join(self.top, path))

    def size(self, path: str) -> int:
        return self._stat(path).st_size

    def open(self, path: str) -> BinaryIO:
        self._stat(path)
        try:
            return open(self._real(path), "rb")
        except OSError as e:
            raise self.fail(path, e.strerror or str(e)) from None


def open_archive(source: str, spool_dir: str | None = None) -> ArchiveFS:
    """An archive from a directory, a tar file (plain or compressed) or `-` (stdin).

    Compressed tars and stdin are first copied (decompressed) into an unnamed
    temporary file in `spool_dir`, since an archive's files are read in the
    order its JSON names them.
    """
    if source == "-":
        return _spooled(sys.stdin.buffer, "stdin", spool_dir)
    if os.path.isdir(source):
        return DirFS(source)
    try:
        f = open(source, "rb")
    except OSError as e:
        raise BadInput(f"cannot open {source}: {e.strerror or e}") from None
    label = os.path.basename(source) or source
    head = f.read(6)
    f.seek(0)
    if detect_compression(head) != NONE or not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        try:
            return _spooled(f, label, spool_dir)
        finally:
            f.close()
    return TarFS(f, label)


def _spooled(raw: BinaryIO, label: str, spool_dir: str | None) -> TarFS:
    spool = tempfile.TemporaryFile(dir=spool_dir)
    try:
        stream = open_decompressed(raw)
        while chunk := stream.read(_COPY):
            spool.write(chunk)
        spool.flush()
        if spool.tell() == 0:
            raise BadInput(f"{label}: empty input, not an image archive")
        return TarFS(spool, label)
    except BaseException:
        spool.close()
        raise
