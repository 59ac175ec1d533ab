"""Reading a tar stream for the applier (applier.py): our own chunked reader and a fast
path for the usual header, with tarfile's own code for everything else.

tarfile's stream mode reads 10 KiB at a time and joins and slices for every member;
here the stream is read in large chunks, counted and bounded (Limits), and headers are
parsed by tarfile's TarInfo (a subclass that is strict about truncated or corrupt
headers and huge extensions), so only the reading is ours.
"""

from __future__ import annotations

import struct
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Protocol, Self, TypeVar

__all__ = [
    "DEFAULT_LIMITS",
    "Counted",
    "EOFHeader",
    "EmptyHeader",
    "Limits",
    "Overflow",
    "Readable",
    "TarFormat",
    "TarReader",
    "guarded_info",
    "member_stream",
]

# tarfile's errors for an all-zero header block (the end-of-archive marker) and for no
# block at all (the data ended): public in tarfile's module but not in typeshed
EOFHeader: type[tarfile.HeaderError] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
EmptyHeader: type[tarfile.HeaderError] = tarfile.EmptyHeaderError  # type: ignore[attr-defined]
_READ_CHUNK = 1 << 20
_FIRST_CHUNK = 10 << 10
_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


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


class TarFormat(Exception):
    """A malformed or truncated tar header (raised through tarfile untouched)."""


class Overflow(Exception):
    """The stream is longer than Limits.max_total_bytes."""


class Counted:
    """The decompressed stream as tarfile reads it, counted and bounded."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n is not None and n >= 0 else 1 << 20)
        self.count += len(data)
        if self.count > self.limit:
            raise Overflow()
        return data


class TarReader:
    """The tar stream, read in large chunks (tarfile's stream mode reads 10 KiB at a
    time and joins and slices for every member, a fifth of a pull's main thread).

    It is also the `tarfile` object that TarInfo's header parsing takes (fileobj,
    offset, pax_headers, encoding, errors): headers are parsed by tarfile's own code,
    only the reading is ours. Seeks go forward only, as in tarfile's stream mode."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, raw: Counted) -> None:
        self.raw = raw
        self.fileobj = self
        self.offset = 0  # where the next header starts (set by TarInfo._proc_*)
        self.pax_headers: dict[str, str] = {}  # global PAX headers
        self.buf = b""
        self.pos = 0  # in buf
        self.base = 0  # the stream offset of buf[0]
        # Read-ahead grows from tarfile's 10 KiB: a corrupt or truncated stream is then
        # still reported in the entry being read, not before the first one.
        self.chunk = _FIRST_CHUNK

    def read(self, n: int) -> bytes:
        buf, pos = self.buf, self.pos
        end = pos + n
        if end <= len(buf):
            self.pos = end
            return buf[pos:end]
        parts = [buf[pos:]] if pos < len(buf) else []
        need = end - len(buf)
        self.base += len(buf)
        self.buf, self.pos = b"", 0
        while need:
            chunk = self.raw.read(max(need, self.chunk))
            self.chunk = min(self.chunk * 2, _READ_CHUNK)
            if not chunk:
                break
            if len(chunk) <= need:
                parts.append(chunk)
                self.base += len(chunk)
                need -= len(chunk)
            else:
                parts.append(chunk[:need])
                self.buf, self.pos, need = chunk, need, 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def tell(self) -> int:
        return self.base + self.pos

    def seek(self, offset: int) -> None:
        """Forward: skip to `offset` (tarfile's sparse reader seeks between chunks)."""
        if offset < self.tell():
            raise tarfile.StreamError("seeking backwards is not allowed")
        while self.tell() < offset:
            if not self.read(min(offset - self.tell(), _READ_CHUNK)):
                return

    def skip_to_header(self) -> None:
        """Past the data of the member read last (what of it was not read, and its
        padding), as tarfile's next() does; the data must all be there."""
        if self.offset != self.tell():
            self.seek(self.offset - 1)
            if not self.read(1):
                raise tarfile.ReadError("unexpected end of data")


class _Member:
    """A regular member's data, read from the tar stream."""

    def __init__(self, reader: TarReader, size: int) -> None:
        self.reader = reader
        self.left = size

    def read(self, n: int) -> bytes:
        data = self.reader.read(min(n, self.left))
        self.left -= len(data)
        return data


class Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


def member_stream(reader: TarReader, info: tarfile.TarInfo) -> Readable:
    """A regular member's content as a stream (a sparse one through tarfile's map of
    its data and holes)."""
    if info.sparse is not None:
        sparse: Readable = tarfile._FileInFile(  # type: ignore[attr-defined]
            reader, info.offset_data, info.size, info.sparse)
        return sparse
    return _Member(reader, info.size)


_Info = TypeVar("_Info", bound=tarfile.TarInfo)
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s")


def _octal(field: bytes) -> int:
    return int(field.partition(b"\0")[0].strip() or b"0", 8)


def _parse_header(cls: type[_Info], buf: bytes | bytearray, encoding: str,
                  errors: str) -> _Info | None:
    """tarfile's TarInfo.frombuf for the usual header (octal numbers, a good unsigned
    checksum, no old GNU sparse map) in one unpack; None for anything else, which
    tarfile's own frombuf then parses or refuses. A third of the header cost."""
    if len(buf) != tarfile.BLOCKSIZE or not buf[0] or buf[156:157] == tarfile.GNUTYPE_SPARSE:
        return None
    (name, mode, uid, gid, size, mtime, chksum, kind, linkname, _magic, uname, gname,
     devmajor, devminor, prefix) = _HEADER.unpack_from(buf)
    try:
        numbers = [_octal(f) for f in (mode, uid, gid, size, mtime, chksum, devmajor, devminor)]
    except ValueError:
        return None  # base-256 numbers, or junk that frombuf refuses
    if numbers[5] != 256 + sum(buf) - sum(buf[148:156]):
        return None  # a signed checksum, or a bad one
    obj = cls()
    obj.name = name.partition(b"\0")[0].decode(encoding, errors)
    obj.mode, obj.uid, obj.gid, obj.size, obj.mtime, obj.chksum = numbers[:6]
    obj.type = kind
    obj.linkname = linkname.partition(b"\0")[0].decode(encoding, errors)
    obj.uname = uname.partition(b"\0")[0].decode(encoding, errors)
    obj.gname = gname.partition(b"\0")[0].decode(encoding, errors)
    obj.devmajor, obj.devminor = numbers[6:]
    if kind == tarfile.AREGTYPE and obj.name.endswith("/"):
        obj.type = tarfile.DIRTYPE  # V7: a directory is a file whose name ends in /
    if obj.type == tarfile.DIRTYPE:
        obj.name = obj.name.rstrip("/")
    prefix_text = prefix.partition(b"\0")[0].decode(encoding, errors)
    if prefix_text and obj.type not in tarfile.GNU_TYPES:
        obj.name = prefix_text + "/" + obj.name
    return obj


def guarded_info(max_header_bytes: int) -> type[tarfile.TarInfo]:
    class GuardedInfo(tarfile.TarInfo):
        """tarfile's TarInfo, strict about truncated or corrupt headers and huge extensions.

        tarfile's own next() treats a bad or truncated header after the first
        member as the end of the archive; here that is an error.
        """

        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            fast = _parse_header(cls, buf, encoding, errors)
            return fast if fast is not None else super().frombuf(buf, encoding, errors)

        @classmethod
        def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
            buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
            if 0 < len(buf) < tarfile.BLOCKSIZE:
                raise TarFormat("the archive ends in the middle of a header (truncated)")
            try:
                obj = cls.frombuf(buf, tarfile_.encoding, tarfile_.errors)
                obj.offset = tarfile_.fileobj.tell() - tarfile.BLOCKSIZE
                return obj._proc_member(tarfile_)
            except (EOFHeader, EmptyHeader):
                raise  # the end-of-archive marker, or the end of the data
            except tarfile.HeaderError as e:
                raise TarFormat(f"bad header ({e})") from None

        def _proc_member(self, tarfile_: tarfile.TarFile) -> Self:
            if self.size < 0:
                raise TarFormat(f"negative size in the header of {self.name!r}")
            if self.type in _HEADER_TYPES and self.size > max_header_bytes:
                raise TarFormat(
                    f"an extended header of {self.size} bytes exceeds the limit of "
                    f"{max_header_bytes}"
                )
            # tarfile's private member parser (not in typeshed): the member, or after an
            # extension header the next one, parsed by this class's fromtarfile
            member: Self = super()._proc_member(tarfile_)  # type: ignore[misc]
            return member

    return GuardedInfo

