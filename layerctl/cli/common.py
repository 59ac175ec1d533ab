"""Helpers shared by the command modules: opening the store, formatting."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from layerctl.cli.out import echo_package_warnings, table  # noqa: F401 - re-exported
from layerctl.store.repo import Store
from layerctl.words import ago, human_size, path_text  # noqa: F401 - re-exported


def open_store(ctx: click.Context) -> Store:
    root = (ctx.find_root().obj or {}).get("root")
    store = Store(root)
    ctx.call_on_close(store.close)
    return store


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
