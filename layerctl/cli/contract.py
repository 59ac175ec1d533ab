"""The error contract of every `layerctl` command line, click or not: one command is one
undoable operation (store/journal.py; the TUI's actions are each their own); a
LayerctlError prints one line `layerctl: ...` and exits with its code, never a
traceback; ^C exits 130; a closed pipe 141; a full disk names the store.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable


def no_secrets(args: list[str]) -> list[str]:
    """The command line as the undo journal records it, without login's password."""
    if "login" not in args:
        return args
    out = []
    for prev, arg in zip(["", *args], args, strict=False):
        hidden = prev in ("-p", "--password") or arg.startswith(("--password=", "-p="))
        out.append("***" if hidden else arg)
    return out


def guarded(args: list[str], run: Callable[[], object],
            root: Callable[[], str | None]) -> None:
    """Run the command `args` through `run()` under the contract. `root()` is the store
    the command was given, for the full-disk message."""
    from layerctl.errors import LayerctlError, NoSpace, is_no_space
    from layerctl.store import journal

    op = contextlib.nullcontext() if {"tui", "demo"} & set(args) else journal.operation(
        "layerctl " + " ".join(no_secrets(args)))
    try:
        with op:
            run()
            sys.stdout.flush()  # a closed pipe is seen here, not at exit
    except LayerctlError as e:
        _say(f"layerctl: {e}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _say("layerctl: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        _drop_stdout()
        sys.exit(141)
    except OSError as e:
        if not is_no_space(e):
            raise
        from layerctl.store.repo import default_root

        _say(f"layerctl: {NoSpace(os.path.abspath(root() or default_root()))}")
        sys.exit(NoSpace.exit_code)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _drop_stdout() -> None:
    """The reader is gone: what is still buffered goes nowhere, so Python's flush at
    exit does not print a second error."""
    with contextlib.suppress(OSError, ValueError):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
