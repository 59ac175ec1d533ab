"""The body of `load` without click: cli/entry.py runs `load -i FILE [-q]` directly
(a load into a fresh store is the first step of "pull or load, then run", which a
script repeats); the click command in cli/interchange.py parses every other form and
calls this same body.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from layerctl.cli.out import echo
from layerctl.errors import BadInput

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def load(store: Store, source: str = "-", quiet: bool = False) -> None:
    """Load images from a docker-archive or an OCI image layout (like docker load)."""
    from layerctl.images import chain, image_id
    from layerctl.oci.archive.load import load as load_archive
    from layerctl.words import short_digest

    if source == "-" and sys.stdin.isatty():
        raise BadInput("requested load from stdin, but stdin is a terminal: use -i FILE")

    def progress(event: object) -> None:
        if quiet:
            return
        where = f"{short_digest(event.diff_id)} [{event.layer + 1}/{event.layers}]"
        if event.status == "exists":
            echo(f"Layer {where}: already exists", err=True)
        elif event.status == "loading":
            echo(f"Loading layer {where}", err=True)

    started = time.monotonic()
    loaded = load_archive(store, source, progress)
    if not quiet and source != "-" and os.path.isfile(source):
        from layerctl.oci.events import throughput

        read = os.path.getsize(source)
        echo(f"Read {throughput(read, time.monotonic() - started)}", err=True)
    for image in loaded:
        if image.tags:
            for tag in image.tags:
                echo(f"Loaded image: {tag}")
        else:
            echo(f"Loaded image ID: {image_id(chain(store, image.top), store)}")
