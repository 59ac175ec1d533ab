"""The `layerctl` program: the plain form of the read commands, run without click;
every other command line goes to click (cli/main.py).

Most runs of `status`, `ps`, `images` and `waste` are start-up: the interpreter, click
(~12 ms) and the command modules, against a few ms of work. So a command line that is
a PLAIN command and only plain words (none starting with '-', as many as the command
takes) calls the command's body directly, the same function its click command calls
with its defaults. Anything else (an option, -h, another command, a word too many)
goes to click (cli/main.py), which parses it and calls that same body. Both ways run
under the same error contract (cli/contract.py).
"""

from __future__ import annotations

import gc
import sys
from importlib import import_module

from layerctl.cli.contract import guarded

# command: (module, function, fewest words, most words). The function takes the open
# store and the words; its other parameters' defaults are the click command's.
PLAIN: dict[str, tuple[str, str, int, int]] = {
    "status": ("layerctl.cli.views", "show_status", 0, 1),
    "ps": ("layerctl.cli.views", "show_ps", 0, 0),
    "images": ("layerctl.cli.views", "show_images", 0, 0),
    "waste": ("layerctl.cli.waste_view", "show_waste", 1, 1),
    "efficiency": ("layerctl.cli.waste_view", "show_waste", 1, 1),
}


def plain(args: list[str]) -> tuple[str, str, list[str]] | None:
    """(module, function, words) when `args` is a plain read command, else None (click
    parses it)."""
    if not args or args[0] not in PLAIN:
        return None
    module, name, least, most = PLAIN[args[0]]
    words = args[1:]
    if not least <= len(words) <= most or any(w.startswith("-") for w in words):
        return None
    return module, name, words


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    found = plain(args)
    if found is None:
        from layerctl.cli.main import main as click_main

        click_main(args)
        return
    module, name, words = found

    def run() -> None:
        from layerctl.store.repo import Store

        body = getattr(import_module(module), name)  # under the contract: ^C is quiet
        store = Store(None)  # LAYERCTL_ROOT or the default, as `--root` unset means
        try:
            body(store, *words)
        finally:
            store.close()

    # A plain command is one short run over objects that form no cycles (modules,
    # trees, records, changes, rows): the cyclic collector's passes over them were ~5%
    # of a first `waste`, imports included (too few objects in `status`, `images`, `ps`
    # for it to show). Memory is still freed by reference counting; the collector
    # resumes for an in-process caller.
    gc.disable()
    try:
        guarded(args, run, lambda: None)
    finally:
        gc.enable()
