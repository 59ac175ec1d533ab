"""`python -m layerctl.runtime supervise RUNTIME ROOT ID BUNDLE`: the detached supervisor."""

from __future__ import annotations

import sys

from layerctl.runtime.supervise import _daemon_main


def _main(argv: list[str]) -> None:
    if len(argv) == 5 and argv[0] == "supervise":
        _daemon_main(*argv[1:])
    print("usage: python -m layerctl.runtime supervise RUNTIME ROOT ID BUNDLE", file=sys.stderr)
    sys.exit(2)


_main(sys.argv[1:])
