"""The `layerctl` program: the plain form of the read commands, run without click;
every other command line goes to click (cli/main.py).

Most runs of `status`, `ps`, `images` and `waste`, and of the loop's `create`, `mount`
and `commit`, are start-up: the interpreter, click (~15 ms) and the command modules,
against a few ms of work (and `load -i FILE` is the first step of a script's "load,
then run"). So a command line that is a PLAIN command, its plain words
(none starting with '-', as many as the command takes) and only the few options listed
for it here, each once and with a value not starting with '-', calls the command's
body directly, the same function its click command calls. Anything else (another
option, `--opt=value`, -h, `--`, another command, a word too many) goes to click
(cli/main.py), which parses it and calls that same body. Both ways run under the same
error contract (cli/contract.py).
"""

from __future__ import annotations

import gc
import sys
from importlib import import_module

from layerctl.cli.contract import guarded

# An option's spellings: the body's parameter and whether it takes a value.
Options = dict[str, tuple[str, bool]]
_COMMIT_OPTIONS: Options = {
    "-m": ("message", True), "--message": ("message", True),
    "-a": ("author", True), "--author": ("author", True),
    "-q": ("quiet", False), "--quiet": ("quiet", False),
}
# command: (module, function, fewest words, most words, options). The function takes
# the open store, the words and the options given; its other parameters' defaults are
# the click command's.
PLAIN: dict[str, tuple[str, str, int, int, Options]] = {
    "status": ("layerctl.cli.views", "show_status", 0, 1, {}),
    "ps": ("layerctl.cli.views", "show_ps", 0, 0, {}),
    "images": ("layerctl.cli.views", "show_images", 0, 0, {}),
    "waste": ("layerctl.cli.waste_view", "show_waste", 1, 1, {}),
    "efficiency": ("layerctl.cli.waste_view", "show_waste", 1, 1, {}),
    "create": ("layerctl.cli.loop", "create", 1, 1, {"--name": ("name", True)}),
    "mount": ("layerctl.cli.loop", "mount", 1, 1, {}),
    "commit": ("layerctl.cli.loop", "commit", 1, 2, _COMMIT_OPTIONS),
    "load": ("layerctl.cli.loading", "load", 0, 0, {
        "-i": ("source", True), "--input": ("source", True),
        "-q": ("quiet", False), "--quiet": ("quiet", False)}),
}

# The plain commands that only read: the cyclic collector is paused for their run.
NO_CYCLES = frozenset({"status", "ps", "images", "waste", "efficiency"})


def plain(args: list[str]) -> tuple[str, str, list[str], dict[str, str | bool]] | None:
    """(module, function, words, options) when `args` is a plain command line, else
    None (click parses it)."""
    if not args or args[0] not in PLAIN:
        return None
    module, name, least, most, options = PLAIN[args[0]]
    words: list[str] = []
    given: dict[str, str | bool] = {}
    rest = iter(args[1:])
    for arg in rest:
        if not arg.startswith("-"):
            words.append(arg)
            continue
        if arg not in options or options[arg][0] in given:
            return None
        param, takes_value = options[arg]
        if not takes_value:
            given[param] = True
            continue
        value = next(rest, None)
        if value is None or value.startswith("-"):
            return None
        given[param] = value
    if not least <= len(words) <= most:
        return None
    return module, name, words, given


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    found = plain(args)
    if found is None:
        from layerctl.cli.main import main as click_main

        click_main(args)
        return
    module, name, words, given = found

    def run() -> None:
        from layerctl.store.repo import Store

        body = getattr(import_module(module), name)  # under the contract: ^C is quiet
        store = Store(None)  # LAYERCTL_ROOT or the default, as `--root` unset means
        try:
            body(store, *words, **given)
        finally:
            store.close()

    # A plain read command is one short run over objects that form no cycles (modules,
    # trees, records, changes, rows): the cyclic collector's passes over them were ~5%
    # of a first `waste`, imports included (too few objects in `status`, `images`, `ps`
    # for it to show). Memory is still freed by reference counting; the collector
    # resumes for an in-process caller. Not for the loop's writers: a commit of many
    # files makes futures and callbacks whose cycles only the collector frees.
    pause = args[0] in NO_CYCLES
    if pause:
        gc.disable()
    try:
        guarded(args, run, lambda: None)
    finally:
        if pause:
            gc.enable()
