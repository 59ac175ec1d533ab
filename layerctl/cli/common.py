"""Helpers shared by the command modules: opening the store, formatting."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from layerctl.store.repo import Store


def open_store(ctx: click.Context) -> Store:
    root = (ctx.find_root().obj or {}).get("root")
    store = Store(root)
    ctx.call_on_close(store.close)
    return store


def human_size(n: int) -> str:
    """Docker's decimal units: 206MB, 1.2GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000
    return f"{n}B"


def ago(timestamp: float) -> str:
    delta = max(0, time.time() - timestamp)
    for seconds, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400 * 7, "week"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ):
        if delta >= seconds:
            n = int(delta // seconds)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago" if delta >= 1 else "Less than a second ago"


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [headers, *rows]:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def progress_printer(label: str) -> Callable[[int, int], None] | None:
    """A one-line progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done < total:
            return
        last[0] = now
        pct = 100 * done // total if total else 100
        bar = "#" * (pct // 4)
        sys.stderr.write(f"\r{label} [{bar:<25}] {pct:3d}% {human_size(done)}/{human_size(total)}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def path_text(path: bytes) -> str:
    return "/" + path.decode("utf-8", "backslashreplace")
