"""Where `save` writes: a tar (docker-archive, oci-archive) or a directory (OCI layout).

Both are deterministic: tar members have owner 0:0, mode 0644 (directories
0755), mtime 0, and come in the order they are added; so the same images give
the same bytes. Blobs are named by their digest, known only once written:
`pending()` writes content first and names it after, by rewriting the
member's header in place (a regular file) or through a temporary file
(a pipe), or by renaming (a directory).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from layerctl.errors import BadInput, LayerctlError

T = TypeVar("T")

_BLOCK = 512
_COPY = 1 << 20


def _header(name: str, size: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name + "/" if directory else name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


class Pending:
    """Content being written whose name comes last: write(), then finish(name)."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self, name: str) -> bool:
        """Name it; False (and the content dropped) when `name` already exists."""
        raise NotImplementedError

    def abort(self) -> None:
        pass


class TarOut:
    """A deterministic tar written to `fileobj`."""

    def __init__(self, fileobj: BinaryIO, spool_dir: str | None = None) -> None:
        self.f = fileobj
        self.spool_dir = spool_dir
        self.names: set[str] = set()
        try:
            appending = fcntl.fcntl(fileobj.fileno(), fcntl.F_GETFL) & os.O_APPEND
            self.pos = fileobj.tell()
            fileobj.seek(self.pos)
            self.seekable = not appending  # O_APPEND writes ignore seeks
        except (OSError, ValueError, AttributeError):
            self.pos = 0
            self.seekable = False

    def _write(self, data: bytes) -> None:
        self.f.write(data)
        self.pos += len(data)

    def dir(self, name: str) -> None:
        if name not in self.names:
            self.names.add(name)
            self._write(_header(name, 0, directory=True))

    def file(self, name: str, data: bytes) -> None:
        if name in self.names:
            return
        self.names.add(name)
        self._write(_header(name, len(data)))
        self._write(data + b"\0" * (-len(data) % _BLOCK))

    def pending(self) -> Pending:
        return _InPlace(self) if self.seekable else _Spooled(self)

    def close(self) -> None:
        self._write(b"\0" * (2 * _BLOCK))
        self.f.flush()


class _InPlace(Pending):
    """A placeholder header, the content, then the real header written over it."""

    def __init__(self, out: TarOut) -> None:
        self.out = out
        self.start = out.pos
        out._write(b"\0" * _BLOCK)
        self.size = 0

    def write(self, data: bytes) -> None:
        self.out.f.write(data)
        self.size += len(data)

    def finish(self, name: str) -> bool:
        out = self.out
        if name in out.names:
            self.abort()
            return False
        header = _header(name, self.size)
        if len(header) != _BLOCK:
            raise LayerctlError(f"internal error: tar member name {name!r} is too long")
        out.names.add(name)
        pad = -self.size % _BLOCK
        out.f.write(b"\0" * pad)
        end = self.start + _BLOCK + self.size + pad
        out.f.seek(self.start)
        out.f.write(header)
        out.f.seek(end)
        out.pos = end
        return True

    def abort(self) -> None:
        self.out.f.seek(self.start)
        self.out.f.truncate()
        self.out.pos = self.start


class _Spooled(Pending):
    def __init__(self, out: TarOut) -> None:
        self.out = out
        self.tmp = tempfile.TemporaryFile(dir=out.spool_dir)
        self.size = 0

    def write(self, data: bytes) -> None:
        self.tmp.write(data)
        self.size += len(data)

    def finish(self, name: str) -> bool:
        out = self.out
        try:
            if name in out.names:
                return False
            out.names.add(name)
            out._write(_header(name, self.size))
            self.tmp.seek(0)
            while chunk := self.tmp.read(_COPY):
                out._write(chunk)
            out._write(b"\0" * (-self.size % _BLOCK))
            return True
        finally:
            self.tmp.close()

    def abort(self) -> None:
        self.tmp.close()


class DirOut:
    """Files under a directory (an OCI image layout being written)."""

    def __init__(self, top: str) -> None:
        self.top = top
        self.names: set[str] = set()

    def _path(self, name: str) -> str:
        return os.path.join(self.top, *name.split("/"))

    def dir(self, name: str) -> None:
        os.makedirs(self._path(name), exist_ok=True)

    def file(self, name: str, data: bytes) -> None:
        path = self._path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        self.names.add(name)

    def pending(self) -> Pending:
        return _DirPending(self)

    def close(self) -> None:
        pass


class _DirPending(Pending):
    def __init__(self, out: DirOut) -> None:
        self.out = out
        fd, self.tmp = tempfile.mkstemp(prefix=".tmp-blob-", dir=out.top)
        self.f = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.f.write(data)

    def finish(self, name: str) -> bool:
        self.f.close()
        path = self.out._path(name)
        if name in self.out.names or os.path.exists(path):
            os.unlink(self.tmp)
            return False
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.rename(self.tmp, path)
        self.out.names.add(name)
        return True

    def abort(self) -> None:
        self.f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_output(output: str, write: Callable[[BinaryIO], T], what: str) -> T:
    """`write(f)` to `output`, a file that appears only complete (a temporary beside
    it, mode 0644 less the umask, renamed into place), or to stdout for `-` (never a
    terminal: `what` names what is refused there)."""
    if output == "-":
        if sys.stdout.isatty():
            raise BadInput(f"refusing to write {what} to a terminal: use -o FILE")
        result = write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return result
    if os.path.isdir(output):
        raise BadInput(f"{output} is a directory: name a file")
    directory = os.path.dirname(os.path.abspath(output))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", dir=directory)
    except OSError as e:
        raise BadInput(f"cannot write {output}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w+b") as f:
            result = write(f)
            os.fchmod(f.fileno(), 0o644 & ~umask())
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return result
