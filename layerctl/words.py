"""Numbers, times and paths in words, shared by the CLI and the TUI."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable


def human_size(n: int) -> str:
    """Decimal units as Docker prints them: 0B, 932B, 12.3kB, 206MB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)}B" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    return f"{n}B"


def ago(timestamp: float, clock: Callable[[], float] = time.time) -> str:
    """Docker's relative times: '3 days ago', 'Less than a second ago'."""
    delta = max(0.0, clock() - timestamp)
    for seconds, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"),
                          (86400, "day"), (3600, "hour"), (60, "minute")):
        if delta >= seconds:
            n = int(delta // seconds)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago" if delta >= 1 else "Less than a second ago"


def rfc3339_nano(ns: int) -> str:
    """A time (ns since the epoch) as Docker's inspect prints it: Go's RFC3339Nano in
    UTC, the fraction without trailing zeros (none for a whole second)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def humanize_bytes(n: int) -> str:
    """dive's sizes (go-humanize Bytes, SI): '7.0 kB', '13 MB', '131 B', '5 B'."""
    if n < 10:
        return f"{n} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    e = min(int(math.floor(math.log(n) / math.log(1000))), len(units) - 1)
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return (f"{val:.1f} {units[e]}" if val < 10 else f"{val:.0f} {units[e]}")


_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v",
              "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
# Control characters (C0, DEL, C1), Unicode line/paragraph separators, bidi
# overrides, quote and backslash; lone surrogates stand for undecodable bytes.
_UNSAFE = re.compile('[\x00-\x1f"\\\\\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069'
                     "\udc80-\udcff]")


def quote_name(raw: bytes) -> str:
    """A file name (any bytes) as one safe line of text, the way git quotes paths
    (core.quotePath=false): as is when harmless, else in double quotes with C escapes
    and octal bytes ("a\\nb", "\\377"), so a name can never forge an output line."""
    text = raw.decode("utf-8", "surrogateescape")
    if not _UNSAFE.search(text):
        return text
    return '"' + _UNSAFE.sub(_escape, text) + '"'


def _escape(m: re.Match) -> str:
    ch = m.group()
    if ch in _C_ESCAPES:
        return _C_ESCAPES[ch]
    raw = ch.encode("utf-8", "surrogateescape")
    return "".join(f"\\{b:03o}" for b in raw)


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def one_line(text: str) -> str:
    """Free text (a message, a created-by, a name from an image config) for one cell of
    one output line: control characters as C escapes, nothing else changed."""
    return _CONTROLS.sub(_escape, text) if _CONTROLS.search(text) else text


def path_text(path: bytes) -> str:
    """A store path (no leading slash, any bytes) as users see it: /etc/passwd,
    or quoted like git when it holds control characters or undecodable bytes."""
    return quote_name(b"/" + path)


def go_time(timestamp: float) -> str:
    """A time as Go's time.Time prints it (Docker's CreatedAt in `images`/`ps`
    --format), in UTC: '2024-01-02 03:04:05 +0000 UTC'."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(timestamp))


def rfc3339(timestamp: float) -> str:
    """Go's RFC3339 in UTC, whole seconds (Docker's `history` CreatedAt)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def short_digest(digest: str) -> str:
    """The 12 hex digits Docker shows for a digest or id (`sha256:` dropped)."""
    return digest.split(":", 1)[-1][:12]
