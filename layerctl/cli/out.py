"""Printing for the command bodies, without click: the bodies that `cli/entry.py` runs
in their plain form must not import it (click is ~12 ms of a ~40 ms run).

`echo` does what click.echo does for the text these commands print (no colour codes):
write the line and flush, so stdout and stderr interleave as they happen.
"""

from __future__ import annotations

import sys

from layerctl.words import one_line


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n" if nl else text)
    stream.flush()


def table(rows: list[list[str]], headers: list[str]) -> None:
    rows = [[one_line(c) for c in row] for row in rows]  # a cell never breaks its line
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    echo("\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                   for row in [headers, *rows]))


def echo_warnings(lines: list[str]) -> None:
    """Warning lines on stderr, each as `layerctl: warning: ...`."""
    for line in lines:
        echo(f"layerctl: warning: {line}", err=True)


def echo_package_warnings(pkgs: object) -> None:
    """The one-line warnings of a layerctl.insight.packages.Packages reader, on stderr."""
    if pkgs is not None:
        echo_warnings(pkgs.warnings)
