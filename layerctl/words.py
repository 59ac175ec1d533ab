"""Numbers, times and paths in words, shared by the CLI and the TUI."""

from __future__ import annotations

import math
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


def path_text(path: bytes) -> str:
    """A store path (no leading slash, any bytes) as users see it."""
    return "/" + path.decode("utf-8", "backslashreplace")


def humanize_bytes(n: int) -> str:
    """dive's sizes (go-humanize Bytes, SI): '7.0 kB', '13 MB', '131 B', '5 B'."""
    if n < 10:
        return f"{n} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    e = min(int(math.floor(math.log(n) / math.log(1000))), len(units) - 1)
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return (f"{val:.1f} {units[e]}" if val < 10 else f"{val:.0f} {units[e]}")
