"""Layer tars built in memory with tarfile, for the tar-apply and hostile-tar tests."""

from __future__ import annotations

import io
import tarfile


def ti(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, mtime: int = 1000,
       linkname: str = "", pax: dict | None = None, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.uid, info.gid = uid, gid
    info.linkname = linkname
    info.pax_headers = pax or {}
    return info


def tar_bytes(*members: tuple, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """members: (TarInfo, data or None)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()
