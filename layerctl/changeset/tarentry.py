"""What one tar entry says, checked (for applier.py): its name and link target as store
paths (bytes, relative, no `..`, within the Limits), and its metadata (owner, mode,
times with PAX precision, device numbers, xattrs from PAX records), and what a `.wh.`
name means. Each check raises the BadInput that `fail` makes, so the message names the
entry being applied."""

from __future__ import annotations

import base64
import re
import tarfile
import urllib.parse
from collections.abc import Callable, Mapping

from layerctl.changeset.tarread import Limits
from layerctl.errors import BadInput
from layerctl.store.meta import DEVICE_KINDS, FILE, OVERLAY_PRIVATE, Meta

__all__ = ["IGNORED", "OPAQUE", "WH", "WHITEOUT", "Fail", "check_bytes", "entry_meta",
           "entry_path", "join", "link_target", "show", "split", "whiteout_name"]

Fail = Callable[[str], BadInput]  # a problem with the entry being applied -> its error
_PAX_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]*))?")


def show(name: str | bytes) -> str:
    """An entry name for messages: quoted, undecodable bytes as \\x escapes."""
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    return repr(name.decode("utf-8", "backslashreplace"))


def join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name


def split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.rpartition(b"/")
    return parent, name


def check_bytes(raw: bytes, what: str, limits: Limits, fail: Fail) -> None:
    """What a member name and a link target must both be: not empty, no NUL, within
    the path length limit."""
    if not raw:
        raise fail(f"empty {what}")
    if b"\0" in raw:
        raise fail(f"{what} contains a NUL byte")
    if len(raw) > limits.max_path_length:
        raise fail(f"{what} is longer than {limits.max_path_length} bytes")


def entry_path(name: str, what: str, limits: Limits, fail: Fail) -> bytes:
    """A member name or hardlink target as a store path, or the error saying why not."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise fail(f"{what} is not encodable") from None
    check_bytes(raw, what, limits, fail)
    if raw.startswith(b"/"):
        raise fail(f"absolute {what} {show(raw)} (layer paths are relative)")
    parts = [p for p in raw.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise fail(f"{what} {show(raw)} contains '..' (it would leave the root)")
    if len(parts) > limits.max_depth:
        raise fail(f"{what} is deeper than {limits.max_depth} directories")
    return b"/".join(parts)


def link_target(text: str, what: str, limits: Limits, fail: Fail) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    check_bytes(raw, what, limits, fail)
    return raw


def entry_meta(info: tarfile.TarInfo, kind: str, fail: Fail) -> Meta:
    pax = info.pax_headers
    text = pax.get("mtime")
    if text is not None:
        mtime_ns = _parse_pax_time(text)
        if mtime_ns is None:
            raise fail(f"invalid PAX mtime {text!r}")
    else:
        mtime_ns = int(info.mtime) * 1_000_000_000
    if info.uid < 0 or info.gid < 0:
        raise fail(f"invalid owner {info.uid}:{info.gid}")
    rdev = None
    if kind in DEVICE_KINDS:
        major = pax.get("SCHILY.devmajor", info.devmajor)
        minor = pax.get("SCHILY.devminor", info.devminor)
        try:
            rdev = (int(major), int(minor))
        except ValueError:
            raise fail(f"invalid device number {major},{minor}") from None
        if rdev[0] < 0 or rdev[1] < 0:
            raise fail(f"invalid device number {major},{minor}")
    return Meta(
        kind=kind,
        mode=info.mode & 0o7777,
        uid=info.uid,
        gid=info.gid,
        mtime_ns=mtime_ns,
        size=info.size if kind == FILE else 0,
        rdev=rdev,
        xattrs=_xattrs(pax, fail),
    )


def _xattrs(pax: Mapping[str, str], fail: Fail) -> tuple[tuple[bytes, bytes], ...]:
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
                raise fail(f"invalid base64 in PAX record {key!r}") from None
        else:
            continue
        if not name or b"\0" in name:
            raise fail(f"invalid xattr name {show(name)}")
        if name.startswith(OVERLAY_PRIVATE):
            continue  # a layer dir must not carry it (save still gives the tar back)
        out[name] = data
    return tuple(sorted(out.items()))

def _parse_pax_time(text: str) -> int | None:
    m = _PAX_TIME.fullmatch(text.strip())
    if m is None:
        return None
    sign, whole, frac = m.groups()
    ns = int(whole) * 1_000_000_000 + int((frac or "")[:9].ljust(9, "0"))
    return -ns if sign else ns




WH = b".wh."  # OCI image-spec layer.md whiteout prefix
_OPQ = b".wh..wh..opq"  # ... and opaque-directory marker
_AUFS_META = WH + WH  # .wh..wh.*: AUFS bookkeeping, not whiteouts
WHITEOUT, OPAQUE, IGNORED = "whiteout", "opaque", "ignored"


def whiteout_name(path: bytes, parent: bytes, base: bytes, allowed: bool,
                  fail: Fail) -> tuple[str | None, bytes]:
    """What a name with `.wh.` in it is: (WHITEOUT, the path it hides), (OPAQUE, the
    directory), (IGNORED, b"") for AUFS metadata, or (None, b"") for a plain name."""
    parts = path.split(b"/")
    if not any(p.startswith(WH) for p in parts):
        return None, b""
    if not allowed:
        raise fail("'.wh.' names are whiteouts, which a root filesystem tar cannot contain")
    for part in parts[:-1]:
        if part.startswith(_AUFS_META):
            return IGNORED, b""
        if part.startswith(WH):
            raise fail(f"whiteout {show(part)} used as a directory")
    if base == _OPQ:
        return OPAQUE, parent
    if base.startswith(_AUFS_META):
        return IGNORED, b""
    name = base[len(WH):]
    if name in (b"", b".", b".."):
        raise fail("whiteout of the directory itself or of its parent")
    return WHITEOUT, join(parent, name)
