"""Package databases parsed from bytes, as hostile input: Debian's dpkg status, Alpine's
apk installed, RPM's sqlite rpmdb (its header blobs decoded here). Each parser gives
{key: Package} and raises Malformed (one line naming where) for what does not parse."""

from __future__ import annotations

import struct

from layerctl.record import Frozen


class Malformed(ValueError):
    """A database that does not parse; the message says where."""


class Package(Frozen):
    """One installed package (a Frozen record, not a dataclass: `waste` imports this
    module on its start-up path)."""

    __slots__ = ("kind", "key", "name", "version", "arch")

    def __init__(self, kind: str, key: str, name: str, version: str, arch: str) -> None:
        self.kind = kind  # deb | apk | rpm
        self.key = key  # unique within its database (name, or name:arch when a name repeats)
        self.name = name
        self.version = version
        self.arch = arch

    @property
    def label(self) -> str:
        return f"{self.key} {self.version}"


def _fields(text: str, where: str, wanted: frozenset[str] | None = None,
            ) -> list[dict[str, str]]:
    """RFC-822-style stanzas (dpkg status): 'Field: value' lines, continuation lines
    starting with a blank, stanzas separated by empty lines. Every line is checked;
    with `wanted`, only those fields are kept (a stanza keeping none is left out)."""
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    last = None
    for n, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
            if cur:
                stanzas.append(cur)
            cur, last = {}, None
            continue
        if line[0] in " \t":
            if last is None:
                raise Malformed(f"{where} line {n}: continuation line outside a field")
            continue  # only single-line fields are read
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name:
            raise Malformed(f"{where} line {n}: not a 'Field: value' line")
        last = name.lower()
        if wanted is None or last in wanted:
            cur[last] = value.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


# what parse_dpkg_status reads of a stanza (a status file's descriptions, priorities,
# dependencies... are checked for shape, not kept)
_DPKG_FIELDS = frozenset(("package", "status", "version", "architecture"))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _keyed(kind: str, found: list[tuple[str, str, str]], sep: str) -> dict[str, Package]:
    """Packages keyed by name; a name installed more than once (multi-arch, rpm's
    gpg-pubkey) by name<sep>arch, then by name<sep>arch<sep>version."""
    count: dict[str, int] = {}
    for name, _v, _a in found:
        count[name] = count.get(name, 0) + 1
    out: dict[str, Package] = {}
    for name, version, arch in found:
        key = name if count[name] == 1 else f"{name}{sep}{arch}"
        if key in out:
            key = f"{key}{sep}{version}"
        out[key] = Package(kind, key, name, version, arch)
    return out


def parse_dpkg_status(data: bytes, where: str = "var/lib/dpkg/status") -> dict[str, Package]:
    found = []
    for st in _fields(_decode(data), where, _DPKG_FIELDS):
        status = st.get("status", "").split()
        if len(status) != 3 or status[2] != "installed":
            continue
        name, version = st.get("package"), st.get("version")
        if not name or not version:
            raise Malformed(f"{where}: an installed package without Package or Version")
        found.append((name, version, st.get("architecture", "")))
    return _keyed("deb", found, ":")


def parse_apk_installed(data: bytes, where: str = "lib/apk/db/installed",
                        ) -> tuple[dict[str, Package], dict[bytes, str]]:
    """(packages, owner of each file path) from apk's installed database."""
    found: list[tuple[str, str, str]] = []
    files: list[list[bytes]] = []
    cur: dict[str, str] = {}
    cur_files: list[bytes] = []
    folder: bytes | None = None

    def close() -> None:
        if not cur:
            return
        if "P" not in cur or "V" not in cur:
            raise Malformed(f"{where}: a package without P: or V:")
        found.append((cur["P"], cur["V"], cur.get("A", "")))
        files.append(list(cur_files))

    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            close()
            cur, cur_files, folder = {}, [], None
            continue
        if len(raw) < 2 or raw[1:2] != b":" or not raw[:1].isalpha():
            raise Malformed(f"{where} line {n}: not an 'X:value' line")
        tag, value = chr(raw[0]), raw[2:]
        if tag == "F":
            folder = value.strip(b"/")
        elif tag == "R":
            if folder is None:
                raise Malformed(f"{where} line {n}: R: before any F:")
            cur_files.append(folder + b"/" + value if folder else value)
        elif tag in "PVA" and tag not in cur:
            cur[tag] = _decode(value).strip()
    close()
    pkgs = _keyed("apk", found, ":")
    owners: dict[bytes, str] = {}
    for pkg, paths in zip(pkgs.values(), files, strict=True):
        for p in paths:
            owners[p] = pkg.key
    return pkgs, owners


# RPM header tags and types (rpm's lib/rpmtag.h).
_NAME, _VERSION, _RELEASE, _EPOCH, _ARCH = 1000, 1001, 1002, 1003, 1022
_DIRINDEXES, _BASENAMES, _DIRNAMES = 1116, 1117, 1118
_INT32, _STRING, _STRING_ARRAY, _I18NSTRING = 4, 6, 8, 9
_WANTED = {_NAME, _VERSION, _RELEASE, _EPOCH, _ARCH, _DIRINDEXES, _BASENAMES, _DIRNAMES}
_HEADER_MAGIC = b"\x8e\xad\xe8\x01"


def _strings(store: bytes, offset: int, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        end = store.find(b"\0", offset)
        if end < 0:
            raise Malformed("string runs past the header's data")
        out.append(store[offset:end])
        offset = end + 1
    return out


def parse_rpm_header(blob: bytes) -> dict[int, object]:
    """The tags layerctl needs from one RPM header: an index of 16-byte entries (tag,
    type, offset, count, big-endian) then the data store they point into."""
    off = 8 if blob[:4] == _HEADER_MAGIC else 0
    if len(blob) < off + 8:
        raise Malformed("header shorter than its preamble")
    il, dl = struct.unpack_from(">II", blob, off)
    start = off + 8
    data_at = start + 16 * il
    if il > 0x10000 or data_at + dl > len(blob):
        raise Malformed(f"header claims {il} entries and {dl} data bytes; it has {len(blob)}")
    store = blob[data_at : data_at + dl]
    out: dict[int, object] = {}
    for i in range(il):
        tag, typ, offset, count = struct.unpack_from(">IIII", blob, start + 16 * i)
        if tag not in _WANTED:
            continue
        if offset >= dl or count > dl or count == 0:
            raise Malformed(f"tag {tag}: offset {offset} / count {count} outside the data")
        if typ in (_STRING, _I18NSTRING):
            out[tag] = _strings(store, offset, 1)[0]
        elif typ == _STRING_ARRAY:
            out[tag] = _strings(store, offset, count)
        elif typ == _INT32:
            if offset + 4 * count > dl:
                raise Malformed(f"tag {tag}: integers run past the data")
            out[tag] = struct.unpack_from(f">{count}I", store, offset)
    return out


_SHAPES = {_NAME: bytes, _VERSION: bytes, _RELEASE: bytes, _ARCH: bytes, _EPOCH: tuple,
           _DIRINDEXES: tuple, _BASENAMES: list, _DIRNAMES: list}


def _rpm_package(h: dict[int, object]) -> tuple[tuple[str, str, str], list[bytes]]:
    if _NAME not in h or _VERSION not in h:
        raise Malformed("a header without NAME or VERSION")
    for tag, value in h.items():
        if not isinstance(value, _SHAPES[tag]):
            raise Malformed(f"tag {tag} has the wrong type")
    version = _decode(h[_VERSION]) + (f"-{_decode(h[_RELEASE])}" if _RELEASE in h else "")
    epoch = h.get(_EPOCH)
    if epoch:
        version = f"{epoch[0]}:{version}"
    paths: list[bytes] = []
    base, dirs, idx = h.get(_BASENAMES), h.get(_DIRNAMES), h.get(_DIRINDEXES)
    if base is not None:
        if dirs is None or idx is None or len(idx) != len(base):
            raise Malformed("file names without matching DIRNAMES/DIRINDEXES")
        for name, i in zip(base, idx, strict=True):
            if i >= len(dirs):
                raise Malformed(f"DIRINDEXES entry {i} past {len(dirs)} DIRNAMES")
            paths.append((dirs[i] + name).strip(b"/"))
    return (_decode(h[_NAME]), version, _decode(h.get(_ARCH, b""))), paths


def parse_rpmdb(data: bytes) -> tuple[dict[str, Package], dict[bytes, str]]:
    """Packages and file owners from an rpmdb.sqlite image (opened read-only from a
    private temporary copy: sqlite needs a file, the store holds a blob)."""
    import os
    import sqlite3  # here: only RPM images pay for the import
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="layerctl-rpmdb-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        conn = sqlite3.connect(f"file:{tmp}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute("SELECT blob FROM Packages ORDER BY hnum").fetchall()
        except sqlite3.Error as e:
            raise Malformed(f"sqlite: {e}") from None
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise Malformed(f"sqlite: {e}") from None
    finally:
        os.unlink(tmp)
    found, files = [], []
    for (blob,) in rows:
        if not isinstance(blob, bytes):
            raise Malformed("a Packages row without a header blob")
        pkg, paths = _rpm_package(parse_rpm_header(blob))
        if pkg[0] == "gpg-pubkey":
            continue  # imported signing keys: not installed software
        found.append(pkg)
        files.append(paths)
    pkgs = _keyed("rpm", found, ".")
    owners = {p: pkg.key for pkg, paths in zip(pkgs.values(), files, strict=True)
              for p in paths}
    return pkgs, owners
